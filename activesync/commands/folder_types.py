"""Folder type numbers of the FolderHierarchy page (MS-ASCMD 2.2.3.186.3, Type in FolderSync).

Responsibility: name the values; nothing else. A mock mailbox picks types from here, a client
finds its Inbox by them.
"""

from __future__ import annotations

import enum


class FolderType(enum.IntEnum):
    """The ``<FolderHierarchy:Type>`` values of a FolderSync Add/Update (MS-ASCMD 2.2.3.186.3)."""

    #: User-created folder of no particular class.
    USER_GENERIC = 1
    #: Default Inbox.
    INBOX = 2
    #: Default Drafts.
    DRAFTS = 3
    #: Default Deleted Items.
    DELETED_ITEMS = 4
    #: Default Sent Items.
    SENT_ITEMS = 5
    #: Default Outbox.
    OUTBOX = 6
    #: Default Tasks.
    TASKS = 7
    #: Default Calendar.
    CALENDAR = 8
    #: Default Contacts.
    CONTACTS = 9
    #: Default Notes.
    NOTES = 10
    #: Default Journal.
    JOURNAL = 11
    #: User-created mail folder.
    USER_MAIL = 12
    #: User-created calendar.
    USER_CALENDAR = 13
    #: User-created contacts folder.
    USER_CONTACTS = 14
    #: User-created tasks folder.
    USER_TASKS = 15
    #: User-created journal.
    USER_JOURNAL = 16
    #: User-created notes folder.
    USER_NOTES = 17
    #: Folder of unknown type.
    UNKNOWN = 18
    #: Recipient information cache (12.1+).
    RECIPIENT_INFORMATION_CACHE = 19

    @property
    def is_mail(self) -> bool:
        """True for folders that hold email (what a phone's mail app syncs)."""
        return self in _MAIL_TYPES


_MAIL_TYPES = frozenset(
    {
        FolderType.INBOX,
        FolderType.DRAFTS,
        FolderType.DELETED_ITEMS,
        FolderType.SENT_ITEMS,
        FolderType.OUTBOX,
        FolderType.USER_MAIL,
    }
)
