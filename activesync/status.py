"""EAS status codes and the per-version rule for where a status travels.

Responsibility: the global status codes of MS-ASCMD 2.2.2 with their spec names, the status
values of the Provision command (MS-ASPROV 2.2.2.54), Exchange's rule for whether a status goes
in the WBXML body or is replaced by an HTTP code (``status_in_body``), and that HTTP code
(``http_equivalent``). It must not build bodies (``answers.py`` does) nor decide that a device is
blocked or unprovisioned (the cores that call it do).

Theory of operation: from 14.0 a server answers most failures with HTTP 200 and
``<Root><Status>N</Status></Root>``; below 14.0, and for statuses newer than the client's
version, it sends the paired HTTP code with an empty body. Exchange's exact cut-off per version
(notes 3.3, from the decompiled ``AirSyncResponse.SetErrorResponse``) is ``_BODY_LIMIT``. The
HTTP pairings come from the MS-ASCMD 2.2.2 table where it names one and from Exchange's
behaviour where it does not; every choice is marked with its source in ``_HTTP``.
"""

from __future__ import annotations

import enum
from typing import Final

from activesync.versions import ProtocolVersion


class Status(enum.IntEnum):
    """MS-ASCMD 2.2.2 common status codes (values 101-184), named as in the spec."""

    InvalidContent = 101
    InvalidWBXML = 102
    InvalidXML = 103
    InvalidDateTime = 104
    InvalidCombinationOfIDs = 105
    InvalidIDs = 106
    InvalidMIME = 107
    DeviceIdMissingOrInvalid = 108
    DeviceTypeMissingOrInvalid = 109
    ServerError = 110
    ServerErrorRetryLater = 111
    ActiveDirectoryAccessDenied = 112
    MailboxQuotaExceeded = 113
    MailboxServerOffline = 114
    SendQuotaExceeded = 115
    MessageRecipientUnresolved = 116
    MessageReplyNotAllowed = 117
    MessagePreviouslySent = 118
    MessageHasNoRecipient = 119
    MailSubmissionFailed = 120
    MessageReplyFailed = 121
    AttachmentIsTooLarge = 122
    UserHasNoMailbox = 123
    UserCannotBeAnonymous = 124
    UserPrincipalCouldNotBeFound = 125
    UserDisabledForSync = 126
    UserOnNewMailboxCannotSync = 127
    UserOnLegacyMailboxCannotSync = 128
    DeviceIsBlockedForThisUser = 129
    AccessDenied = 130
    AccountDisabled = 131
    SyncStateNotFound = 132
    SyncStateLocked = 133
    SyncStateCorrupt = 134
    SyncStateAlreadyExists = 135
    SyncStateVersionInvalid = 136
    CommandNotSupported = 137
    VersionNotSupported = 138
    DeviceNotFullyProvisionable = 139
    RemoteWipeRequested = 140
    LegacyDeviceOnStrictPolicy = 141
    DeviceNotProvisioned = 142
    PolicyRefresh = 143
    InvalidPolicyKey = 144
    ExternallyManagedDevicesNotAllowed = 145
    NoRecurrenceInCalendar = 146
    UnexpectedItemClass = 147
    RemoteServerHasNoSSL = 148
    InvalidStoredRequest = 149
    ItemNotFound = 150
    TooManyFolders = 151
    NoFoldersFound = 152
    ItemsLostAfterMove = 153
    FailureInMoveOperation = 154
    MoveCommandDisallowedForNonPersistentMoveAction = 155
    MoveCommandInvalidDestinationFolder = 156
    AvailabilityTooManyRecipients = 160
    AvailabilityDLLimitReached = 161
    AvailabilityTransientFailure = 162
    AvailabilityFailure = 163
    BodyPartPreferenceTypeNotSupported = 164
    DeviceInformationRequired = 165
    InvalidAccountId = 166
    AccountSendDisabled = 167
    IRM_FeatureDisabled = 168
    IRM_TransientError = 169
    IRM_PermanentError = 170
    IRM_InvalidTemplateID = 171
    IRM_OperationNotPermitted = 172
    NoPicture = 173
    PictureTooLarge = 174
    PictureLimitReached = 175
    BodyPart_ConversationTooLarge = 176
    MaximumDevicesReached = 177
    InvalidMimeBodyCombination = 178
    InvalidSmartForwardParameters = 179
    # MS-ASCMD 2.2.2 (public spec numbering; Exchange's own enum differs from 180 on, notes 3.2).
    InvalidRecipients = 183
    OneOrMoreExceptionsFailed = 184


class ProvisionStatus(enum.IntEnum):
    """MS-ASPROV 2.2.2.54.2: Provision/Status in a response."""

    #: The request was processed.
    Success = 1
    #: Protocol error: the request broke the syntax (e.g. no PolicyType).
    ProtocolError = 2
    #: General server error; the client retries.
    ServerError = 3
    #: The client acknowledged partial compliance (2) and the server forbids it.
    DeviceNotFullyProvisionable = 139
    #: No policy key and the server demands one.
    LegacyDeviceOnStrictPolicy = 141
    #: The client said a third party manages it (4) and the server forbids it.
    ExternallyManagedDevicesNotAllowed = 145
    #: MS-ASCMD 2.2.2: 14.1+ initial request without settings:DeviceInformation.
    DeviceInformationRequired = 165


class PolicyStatus(enum.IntEnum):
    """MS-ASPROV 2.2.2.54.1: Policy/Status in a response."""

    #: The policy is included (or the acknowledgement was accepted).
    Success = 1
    #: There is no policy for this client.
    NoPolicy = 2
    #: The PolicyType is unknown.
    UnknownPolicyType = 3
    #: The policy data on the server is corrupt.
    PolicyDataCorrupt = 4
    #: The client acknowledged a policy key that is not the one issued.
    WrongPolicyKey = 5


class PolicyAckStatus(enum.IntEnum):
    """MS-ASPROV 2.2.2.54.1: Policy/Status in the client's acknowledgement."""

    #: The policy was applied.
    Applied = 1
    #: Partly applied (at least the PIN was enabled).
    Partial = 2
    #: Not applied.
    NotApplied = 3
    #: A third party provisions the device.
    ExternallyManaged = 4


class WipeAckStatus(enum.IntEnum):
    """MS-ASPROV 2.2.2.54.3: RemoteWipe/Status and AccountOnlyRemoteWipe/Status (request)."""

    #: The wipe succeeded.
    Succeeded = 1
    #: The wipe failed.
    Failed = 2


#: MS-ASCMD 2.2.2 global statuses start at 101; lower values are command-specific and always
#: travel in the body.
FIRST_GLOBAL_STATUS: Final = 101

#: Exchange's per-version cut-off (notes 3.3, EXDEC ``SetErrorResponse``): status N goes in the
#: body when N <= limit. Below 14.0 only command-specific statuses (< 101) do; above 16.0 all do.
_BODY_LIMIT: Final[dict[ProtocolVersion, int]] = {
    ProtocolVersion.V2_5: FIRST_GLOBAL_STATUS - 1,
    ProtocolVersion.V12_0: FIRST_GLOBAL_STATUS - 1,
    ProtocolVersion.V12_1: FIRST_GLOBAL_STATUS - 1,
    ProtocolVersion.V14_0: 163,
    ProtocolVersion.V14_1: 177,
    ProtocolVersion.V16_0: 185,
}


def status_in_body(status: int, version: ProtocolVersion) -> bool:
    """Whether a server sends ``status`` in the WBXML body to a client of ``version``.

    Exchange's rule (notes 3.3): below 14.0 only statuses < 101; 14.0 up to 163; 14.1 up to
    177; 16.0 up to 185; 16.1 every status. Otherwise the paired HTTP code replaces it.
    A command without an XML root never carries a body status; ``answers.py`` checks that.
    """
    limit = _BODY_LIMIT.get(version)
    return limit is None or status <= limit


#: HTTP code sent instead of a body status, with where the pairing comes from. "spec" is the
#: MS-ASCMD 2.2.2 table (R7461-R7566); "Exchange" is the decompiled server (notes 3.2/5.2/6);
#: "choice" is ours where neither names one, picked by the status's nature (client error 400,
#: access 403, server trouble 500/503) so a client reacts sensibly.
_HTTP: Final[dict[int, tuple[int, str]]] = {
    101: (400, "spec"),
    102: (400, "choice: undecodable body is a client error like 101/103"),
    103: (400, "spec"),
    104: (400, "choice"),
    105: (400, "choice"),
    106: (400, "spec (500 for SendMail)"),
    107: (400, "choice"),
    108: (400, "Exchange"),
    109: (400, "Exchange"),
    110: (500, "spec"),
    111: (503, "spec"),
    112: (403, "spec"),
    113: (507, "spec"),
    114: (503, "choice: the mailbox server is down, retry later"),
    115: (507, "choice: quota, like 113"),
    116: (400, "choice"),
    117: (400, "choice"),
    118: (400, "choice"),
    119: (400, "choice"),
    120: (500, "Exchange"),
    121: (500, "choice: like 120"),
    122: (400, "choice"),
    123: (403, "choice: no mailbox to serve, like 125"),
    124: (401, "choice: no credentials"),
    125: (403, "spec"),
    126: (403, "spec"),
    127: (403, "choice: access refused by configuration, like 126"),
    128: (403, "choice: like 127"),
    129: (403, "Exchange"),
    130: (403, "choice: access denied"),
    131: (403, "choice: access denied"),
    132: (403, "spec (500 for Provision)"),
    133: (503, "choice: mailbox being moved, retry later"),
    134: (500, "choice"),
    135: (503, "choice: concurrent initial syncs, retry later"),
    136: (500, "choice"),
    137: (501, "spec"),
    138: (400, "spec"),
    139: (403, "Exchange"),
    140: (403, "spec: 403 when no policy key was sent, 449 when one was"),
    141: (449, "spec (Exchange 2013 sends 403)"),
    142: (449, "spec"),
    143: (449, "spec"),
    144: (449, "spec"),
    145: (403, "choice: access refused"),
    147: (400, "spec (or 501)"),
    165: (400, "choice: the request lacked required content"),
    177: (403, "Exchange"),
}


def http_equivalent(
    status: int, command: str | None = None, *, policy_key_sent: bool = False
) -> int:
    """The HTTP code a server sends instead of ``status`` when the body cannot carry it.

    ``command`` refines the two statuses whose pairing depends on it (106 for SendMail -> 500,
    132 for Provision -> 500); ``policy_key_sent`` picks 449 over 403 for 140
    (MS-ASCMD 2.2.2 R7561/R7562). Command-specific statuses (< 101) are not errors at the HTTP
    level: 200. Any other global status without a named pairing: 400 for 1xx client-side
    problems is the safe default (the client does not retry an unchanged request).
    """
    if status < FIRST_GLOBAL_STATUS:
        return 200
    if status == Status.RemoteWipeRequested:
        return 449 if policy_key_sent else 403
    if status == Status.InvalidIDs and command == "SendMail":
        return 500
    if status == Status.SyncStateNotFound and command == "Provision":
        return 500
    return _HTTP.get(status, (400, "choice"))[0]


def http_pairing_source(status: int) -> str:
    """Where ``http_equivalent``'s pairing for ``status`` comes from (for explanations)."""
    if status < FIRST_GLOBAL_STATUS:
        return "command-specific status: always in the body"
    return _HTTP.get(status, (400, "choice: no pairing named anywhere"))[1]


def status_name(status: int) -> str:
    """The spec name of a global status (``"DeviceIsBlockedForThisUser"``), or ``"Status N"``."""
    try:
        return Status(status).name
    except ValueError:
        return f"Status {status}"
