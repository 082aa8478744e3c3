"""The pure mailbox core: folder and item sync keys, windowing, client changes, delivery."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange_sim.mailbox import (
    DELETED_ITEMS_ID,
    INBOX_ID,
    SENT_ITEMS_ID,
    AddResponse,
    ChangeResponse,
    ClientAdd,
    ClientChange,
    ClientDelete,
    ClientFetch,
    DeleteResponse,
    FetchResponse,
    MailStore,
    Message,
    MimeError,
    ServerAdd,
    ServerChange,
    ServerDelete,
)

NOW = 1_767_225_600.0


def make_store(seeded: int = 0) -> MailStore:
    store = MailStore.for_users([("alice", "alice@example.com"), ("bob", "bob@example.com")])
    if seeded:
        store.seed(seeded, seed=7, now=NOW)
    return store


def note(subject: str, to: tuple[str, ...] = ("alice@example.com",)) -> Message:
    return Message(subject=subject, sender="carol@example.com", to=to, body="hi", received=NOW)


def primed(store: MailStore, user: str = "alice", device: str = "DEV1") -> str:
    mailbox = store.mailbox(user)
    assert mailbox is not None
    return mailbox.sync(device, INBOX_ID, "0").sync_key


def test_folder_sync_initial_lists_every_folder_and_issues_a_key() -> None:
    mailbox = make_store().mailbox("alice")
    assert mailbox is not None
    result = mailbox.folder_sync("DEV1", "0")
    assert result.status == 1
    assert result.sync_key != "0"
    assert {f.name for f in result.adds} >= {"Inbox", "Drafts", "Deleted Items", "Sent Items"}
    assert result.updates == ()
    assert result.deletes == ()


def test_folder_sync_with_current_key_reports_no_changes_and_keeps_the_key() -> None:
    mailbox = make_store().mailbox("alice")
    assert mailbox is not None
    key = mailbox.folder_sync("DEV1", "0").sync_key
    again = mailbox.folder_sync("DEV1", key)
    assert (again.status, again.sync_key, again.adds) == (1, key, ())


def test_folder_sync_with_unknown_key_gets_status_9() -> None:
    mailbox = make_store().mailbox("alice")
    assert mailbox is not None
    mailbox.folder_sync("DEV1", "0")
    assert mailbox.folder_sync("DEV1", "999").status == 9
    assert mailbox.folder_sync("OTHER", "1").status == 9


def test_sync_key_zero_primes_the_collection_and_returns_no_items() -> None:
    mailbox = make_store(seeded=3).mailbox("alice")
    assert mailbox is not None
    result = mailbox.sync("DEV1", INBOX_ID, "0")
    assert result.status == 1
    assert result.sync_key not in ("", "0")
    assert result.commands == ()


def test_sync_after_priming_sends_the_seeded_mail_as_adds() -> None:
    store = make_store(seeded=3)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    result = mailbox.sync("DEV1", INBOX_ID, primed(store))
    assert [type(c) for c in result.commands] == [ServerAdd] * 3
    assert not result.more_available


def test_window_size_limits_changes_and_sets_more_available_until_drained() -> None:
    store = make_store(seeded=5)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    key = primed(store)
    sizes = []
    more = []
    for _ in range(3):
        result = mailbox.sync("DEV1", INBOX_ID, key, window_size=2)
        sizes.append(len(result.commands))
        more.append(result.more_available)
        key = result.sync_key
    assert sizes == [2, 2, 1]
    assert more == [True, True, False]


def test_stale_sync_key_gets_status_3() -> None:
    store = make_store(seeded=2)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    k1 = primed(store)
    k2 = mailbox.sync("DEV1", INBOX_ID, k1).sync_key
    k3 = mailbox.sync("DEV1", INBOX_ID, k2).sync_key
    assert k3 != k1
    assert mailbox.sync("DEV1", INBOX_ID, k1).status == 3
    assert mailbox.sync("DEV1", INBOX_ID, "nonsense").status == 3


def test_resending_the_previous_key_replays_the_same_changes() -> None:
    store = make_store(seeded=2)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    k1 = primed(store)
    first = mailbox.sync("DEV1", INBOX_ID, k1)
    retry = mailbox.sync("DEV1", INBOX_ID, k1)
    assert retry.status == 1
    assert retry.commands == first.commands


def test_sync_of_unknown_collection_gets_status_12() -> None:
    mailbox = make_store().mailbox("alice")
    assert mailbox is not None
    assert mailbox.sync("DEV1", "999", "0").status == 12


def test_client_add_gets_a_server_id_and_is_not_echoed_back() -> None:
    store = make_store()
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    key = primed(store)
    result = mailbox.sync("DEV1", INBOX_ID, key, commands=[ClientAdd("c1", note("draft"))])
    (response,) = result.responses
    assert isinstance(response, AddResponse)
    assert (response.client_id, response.status) == ("c1", 1)
    assert response.server_id.startswith(f"{INBOX_ID}:")
    assert result.commands == ()
    assert mailbox.sync("DEV1", INBOX_ID, result.sync_key).commands == ()


def test_resent_client_add_is_stored_once() -> None:
    store = make_store()
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    key = primed(store)
    first = mailbox.sync("DEV1", INBOX_ID, key, commands=[ClientAdd("c1", note("x"))])
    again = mailbox.sync("DEV1", INBOX_ID, key, commands=[ClientAdd("c1", note("x"))])
    assert first.responses == again.responses
    assert len(mailbox.folders[INBOX_ID].items) == 1


def test_client_change_reaches_other_devices_but_not_the_sender() -> None:
    store = make_store(seeded=1)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    k_a = mailbox.sync("A", INBOX_ID, primed(store, device="A")).sync_key
    k_b = mailbox.sync("B", INBOX_ID, primed(store, device="B")).sync_key
    server_id = next(iter(mailbox.folders[INBOX_ID].items))
    changed = mailbox.sync("A", INBOX_ID, k_a, commands=[ClientChange(server_id, read=True)])
    assert changed.responses == ()
    assert changed.commands == ()
    assert mailbox.folders[INBOX_ID].items[server_id].message.read is True
    seen_by_b = mailbox.sync("B", INBOX_ID, k_b).commands
    assert len(seen_by_b) == 1
    assert isinstance(seen_by_b[0], ServerChange)
    assert seen_by_b[0].item.message.read is True


def test_client_change_and_delete_of_unknown_item_fail_with_status_8() -> None:
    store = make_store()
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    result = mailbox.sync(
        "DEV1",
        INBOX_ID,
        primed(store),
        commands=[ClientChange("5:404", read=True), ClientDelete("5:405"), ClientFetch("5:406")],
    )
    assert result.responses == (
        ChangeResponse("5:404", 8),
        DeleteResponse("5:405", 8),
        FetchResponse("5:406", 8),
    )


def test_client_delete_moves_to_deleted_items_and_other_devices_see_a_delete() -> None:
    store = make_store(seeded=2)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    k_a = mailbox.sync("A", INBOX_ID, primed(store, device="A")).sync_key
    k_b = mailbox.sync("B", INBOX_ID, primed(store, device="B")).sync_key
    victim = sorted(mailbox.folders[INBOX_ID].items)[0]
    result = mailbox.sync("A", INBOX_ID, k_a, commands=[ClientDelete(victim)])
    assert result.responses == ()
    assert victim not in mailbox.folders[INBOX_ID].items
    assert len(mailbox.folders[DELETED_ITEMS_ID].items) == 1
    assert mailbox.sync("B", INBOX_ID, k_b).commands == (ServerDelete(victim),)


def test_client_delete_without_deletes_as_moves_removes_for_good() -> None:
    store = make_store(seeded=1)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    key = mailbox.sync("A", INBOX_ID, primed(store, device="A")).sync_key
    victim = next(iter(mailbox.folders[INBOX_ID].items))
    mailbox.sync("A", INBOX_ID, key, commands=[ClientDelete(victim)], deletes_as_moves=False)
    assert mailbox.folders[DELETED_ITEMS_ID].items == {}


def test_client_fetch_returns_the_item() -> None:
    store = make_store(seeded=1)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    server_id = next(iter(mailbox.folders[INBOX_ID].items))
    result = mailbox.sync("A", INBOX_ID, primed(store, device="A"), get_changes=False)
    fetched = mailbox.sync("A", INBOX_ID, result.sync_key, commands=[ClientFetch(server_id)])
    (response,) = fetched.responses
    assert isinstance(response, FetchResponse)
    assert response.status == 1
    assert response.item is not None
    assert response.item.server_id == server_id


def test_delivery_reaches_known_recipients_and_reports_unknown_ones() -> None:
    store = make_store()
    delivery = store.deliver(
        note("hello", to=("Alice <ALICE@example.com>", "bob", "nobody@elsewhere.org")), now=NOW
    )
    assert delivery.delivered_to == ("alice",)
    assert delivery.unknown == ("bob", "nobody@elsewhere.org")
    alice = store.mailbox("alice@example.com")
    assert alice is not None
    (item,) = alice.folders[INBOX_ID].items.values()
    assert item.message.subject == "hello"


def test_delivery_wakes_the_ping_check_for_a_synced_inbox() -> None:
    store = make_store()
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    mailbox.sync("DEV1", INBOX_ID, primed(store))
    baseline = mailbox.folder_seqs([INBOX_ID, SENT_ITEMS_ID])
    assert mailbox.changed_folders("DEV1", [INBOX_ID, SENT_ITEMS_ID], baseline) == ()
    before = mailbox.change_seq
    store.deliver(note("new"), now=NOW)
    assert mailbox.change_seq > before
    assert mailbox.changed_folders("DEV1", [INBOX_ID, SENT_ITEMS_ID], baseline) == (INBOX_ID,)


def test_ping_check_of_never_synced_folder_compares_with_the_baseline() -> None:
    store = make_store(seeded=2)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    baseline = mailbox.folder_seqs([INBOX_ID])
    assert mailbox.changed_folders("DEV1", [INBOX_ID], baseline) == ()
    store.deliver(note("new"), now=NOW)
    assert mailbox.changed_folders("DEV1", [INBOX_ID], baseline) == (INBOX_ID,)


def test_estimate_counts_pending_changes_and_checks_keys() -> None:
    store = make_store(seeded=4)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    assert mailbox.estimate("DEV1", INBOX_ID, "0").status == 3
    key = primed(store)
    estimate = mailbox.estimate("DEV1", INBOX_ID, key)
    assert (estimate.status, estimate.estimate) == (1, 4)
    assert mailbox.estimate("DEV1", INBOX_ID, "77").status == 4
    assert mailbox.estimate("DEV1", "999", key).status == 2


def test_seeding_is_deterministic_for_a_seed() -> None:
    def subjects(seed: int) -> list[str]:
        store = MailStore.for_users([("alice", "alice@example.com")])
        store.seed(4, seed=seed, now=NOW)
        mailbox = store.mailbox("alice")
        assert mailbox is not None
        return [
            i.message.subject + i.message.sender for i in mailbox.folders[INBOX_ID].items.values()
        ]

    assert subjects(3) == subjects(3)
    assert len(subjects(3)) == 4


def test_message_from_mime_reads_recipients_subject_and_body() -> None:
    raw = (
        b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nCc: Carol <carol@x.org>\r\n"
        b"Subject: Lunch\r\n\r\nNoon?\r\n"
    )
    message = Message.from_mime(raw, now=NOW, default_sender="alice@example.com")
    assert message.subject == "Lunch"
    assert message.recipients == ("bob@example.com", "carol@x.org")
    assert message.body.strip() == "Noon?"
    assert message.mime() == raw


def test_message_from_empty_mime_raises_mime_error() -> None:
    with pytest.raises(MimeError, match="empty"):
        Message.from_mime(b"  ", now=NOW, default_sender="a@example.com")


def test_rendered_mime_of_a_stored_message_parses_back() -> None:
    message = note("Round trip")
    parsed = Message.from_mime(message.mime(), now=NOW, default_sender="x@example.com")
    assert (parsed.subject, parsed.recipients) == ("Round trip", ("alice@example.com",))


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, int]]:
    kinds = st.sampled_from(["deliver", "read", "delete", "sync"])
    return draw(st.lists(st.tuples(kinds, st.integers(1, 6)), max_size=25))


@given(operations())
def test_a_device_that_syncs_to_the_end_holds_exactly_the_folder(
    ops: list[tuple[str, int]],
) -> None:
    store = make_store(seeded=3)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    key = primed(store, device="PHONE")
    replica: dict[str, bool] = {}  # server id -> read flag, as the phone sees it

    def sync(window: int) -> bool:
        nonlocal key
        result = mailbox.sync("PHONE", INBOX_ID, key, window_size=window)
        assert result.status == 1
        for command in result.commands:
            if isinstance(command, ServerDelete):
                del replica[command.server_id]
            else:
                replica[command.item.server_id] = command.item.message.read
        key = result.sync_key
        return result.more_available

    for kind, n in ops:
        items = sorted(mailbox.folders[INBOX_ID].items)
        if kind == "deliver":
            store.deliver(note(f"m{n}"), now=NOW)
        elif kind == "read" and items:
            other = mailbox.sync("TABLET", INBOX_ID, "0").sync_key
            mailbox.sync(
                "TABLET", INBOX_ID, other, commands=[ClientChange(items[n % len(items)], read=True)]
            )
        elif kind == "delete" and items:
            mailbox.sync("TABLET", INBOX_ID, "0")
            tablet_key = mailbox.devices["TABLET"].collections[INBOX_ID].current_key
            assert tablet_key is not None
            mailbox.sync(
                "TABLET", INBOX_ID, tablet_key, commands=[ClientDelete(items[n % len(items)])]
            )
        elif kind == "sync":
            sync(n)
    for _ in range(100):
        if not sync(2):
            break
    expected = {sid: item.message.read for sid, item in mailbox.folders[INBOX_ID].items.items()}
    assert replica == expected
