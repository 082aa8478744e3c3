"""The pure device client fed canned answers: every reaction, at every version and query form."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import pytest
from device_canned import (
    FINAL_KEY,
    FORMS,
    INBOX,
    NOW,
    TEMP_KEY,
    VERSIONS,
    body,
    expect_send,
    folder_list,
    from_answer,
    identity,
    mail,
    parsed,
    ping_answer,
    provision_final,
    provision_initial,
    ready_client,
    sync_answer,
    wbxml,
    wipe_directive,
)
from hypothesis import given
from hypothesis import strategies as st

from activesync.answers import (
    blocked_answer,
    device_limit_answer,
    provisioning_needed_answer,
    remote_wipe_needed_answer,
    status_answer,
)
from activesync.commands.provision import ProvisionRequest, ProvisionResponse, RequestKind
from activesync.commands.send_mail import SendMailRequest
from activesync.commands.sync import SyncRequest
from activesync.versions import ProtocolVersion
from device_sim.client import (
    MAX_BACKOFFS,
    Backoff,
    BlockKind,
    DeviceClient,
    DeviceState,
    Done,
    Event,
    FolderSync,
    Halt,
    IllegalTransition,
    Options,
    Outcome,
    Ping,
    Provision,
    Send,
    SendMail,
    Settings,
    Step,
    Sync,
    UsageError,
    next_state,
)
from device_sim.wire import HttpResponse, QueryForm, Quirk

every_version = pytest.mark.parametrize("version", VERSIONS)
every_form = pytest.mark.parametrize("form", FORMS)


def v(text: str) -> ProtocolVersion:
    return ProtocolVersion.from_text(text)


def state_of(client: DeviceClient) -> DeviceState:
    """The state, read through a call so type checkers do not pin it between steps."""
    return client.state


# --- provisioning ------------------------------------------------------------------------


@every_version
@every_form
def test_provision_two_phases_applies_policy_and_keeps_final_key(
    version: str, form: QueryForm
) -> None:
    client = DeviceClient(identity(version, form))
    first = client.begin(Provision())
    assert state_of(client) is DeviceState.PROVISIONING
    line = parsed(first)
    assert (line.command, line.form, line.policy_key) == ("Provision", form.value, 0)
    assert line.protocol_version == v(version)
    assert (line.user, line.device_id, line.device_type) == ("alice", "DEV0001", "iPhone")
    initial = ProvisionRequest.from_element(body(first))
    assert initial.kind is RequestKind.INITIAL
    # MS-ASPROV 2.2.2.53: DeviceInformation from 14.1, never below.
    assert (initial.device_information is not None) == (v(version) >= ProtocolVersion.V14_1)

    result = client.receive(provision_initial(version), NOW)
    assert client.state is DeviceState.ACKNOWLEDGING
    assert result.details["policy_key"] == TEMP_KEY
    assert client.policy is not None
    assert client.policy.restrictions == {
        "DevicePasswordEnabled": True,
        "MinDevicePasswordLength": 6,
    }
    ack = expect_send(result)
    assert parsed(ack).policy_key == TEMP_KEY
    ack_body = ProvisionRequest.from_element(body(ack))
    assert (ack_body.kind, ack_body.policy_key, ack_body.status) == (
        RequestKind.ACKNOWLEDGEMENT,
        str(TEMP_KEY),
        1,
    )

    done = client.receive(provision_final(version), NOW)
    assert done.action == Done(True)
    assert (client.state, client.policy_key) == (DeviceState.READY, FINAL_KEY)
    assert "final" in done.summary


@every_version
def test_commands_after_provisioning_carry_the_final_key_but_ping_carries_none(
    version: str,
) -> None:
    client = ready_client(version)
    request = client.begin(Sync())
    assert parsed(request).policy_key == FINAL_KEY
    client.receive(sync_answer("1"), NOW)
    client.receive(sync_answer("2"), NOW)
    ping = client.begin(Ping(60))
    # MS-ASPROV 3.1.5.1: Ping carries no policy key.
    assert parsed(ping).policy_key is None


@every_version
def test_no_key_quirk_sends_no_policy_key_on_the_first_provision(version: str) -> None:
    client = DeviceClient(identity(version, quirks=frozenset({Quirk.NO_KEY_ON_FIRST_PROVISION})))
    first = client.begin(Provision())
    assert parsed(first).policy_key is None
    assert first.header("X-MS-PolicyKey") is None
    ack = expect_send(client.receive(provision_initial(version), NOW))
    assert parsed(ack).policy_key == TEMP_KEY


@every_version
def test_ack_key_in_query_quirk_moves_the_temporary_key_to_the_query(version: str) -> None:
    client = DeviceClient(identity(version, quirks=frozenset({Quirk.ACK_KEY_IN_QUERY})))
    client.begin(Provision())
    ack = expect_send(client.receive(provision_initial(version), NOW))
    line = parsed(ack)
    assert line.policy_key is None
    assert line.param("PolicyKey") == str(TEMP_KEY)


@every_version
@pytest.mark.parametrize("kind", [142, 143, 144])
def test_provisioning_needed_reprovisions_then_retries_the_command(version: str, kind: int) -> None:
    client = ready_client(version)
    client.begin(Sync())
    refused = client.receive(from_answer(provisioning_needed_answer("Sync", version, kind)), NOW)
    assert refused.outcome is Outcome.REPROVISION
    # Below 14.0 the server can only say 449; from 14.0 it says the status in the body.
    assert refused.http_status == (449 if v(version) < ProtocolVersion.V14_0 else 200)
    again = expect_send(refused)
    assert parsed(again).command == "Provision"
    assert parsed(again).policy_key == 0
    assert client.state is DeviceState.PROVISIONING
    ack = expect_send(client.receive(provision_initial(version, key=3333), NOW))
    retry = expect_send(client.receive(provision_final(version, key=4444), NOW))
    assert parsed(retry).command == "Sync"
    assert parsed(retry).policy_key == 4444
    assert parsed(ack).policy_key == 3333
    assert isinstance(client.receive(sync_answer("1"), NOW).action, Send)


@every_version
def test_reprovisioning_is_bounded_when_the_server_never_accepts(version: str) -> None:
    client = ready_client(version)
    client.begin(FolderSync())
    answer = from_answer(provisioning_needed_answer("FolderSync", version, 144))
    result = client.receive(answer, NOW)
    rounds = 0
    while isinstance(result.action, Send) and rounds < 50:
        rounds += 1
        request = result.action.request
        if parsed(request).command == "Provision":
            is_ack = body(request).find("Policies/Policy/PolicyKey") is not None
            response = provision_final(version) if is_ack else provision_initial(version)
        else:
            response = answer
        result = client.receive(response, NOW)
    assert result.action == Done(False)
    assert result.outcome is Outcome.FAILED
    assert rounds < 50


# --- refusals ---------------------------------------------------------------------------------


@every_version
@every_form
def test_blocked_device_halts_with_the_code_its_version_can_see(
    version: str, form: QueryForm
) -> None:
    client = ready_client(version, form)
    client.begin(Sync())
    result = client.receive(from_answer(blocked_answer("Sync", version)), NOW)
    assert result.action == Halt(DeviceState.BLOCKED)
    assert client.state is DeviceState.BLOCKED
    assert client.block is not None
    if v(version) < ProtocolVersion.V14_0:
        assert (client.block.code, client.block.kind) == (403, BlockKind.FORBIDDEN)
    else:
        assert (client.block.code, client.block.kind) == (129, BlockKind.BLOCKED)
        assert result.eas_status == 129
    assert str(client.block.code) in result.summary


@every_version
def test_device_limit_is_177_from_14_1_and_403_before(version: str) -> None:
    client = DeviceClient(identity(version))
    client.begin(Provision())
    result = client.receive(from_answer(device_limit_answer("Provision", version)), NOW)
    assert result.action == Halt(DeviceState.BLOCKED)
    assert client.block is not None
    if v(version) >= ProtocolVersion.V14_1:
        assert (client.block.code, client.block.kind) == (177, BlockKind.DEVICE_LIMIT)
    else:
        assert (client.block.code, client.block.kind) == (403, BlockKind.FORBIDDEN)


@every_version
def test_blocked_device_may_try_again_and_becomes_ready_when_served(version: str) -> None:
    client = ready_client(version)
    client.begin(FolderSync())
    client.receive(from_answer(blocked_answer("FolderSync", version)), NOW)
    client.begin(FolderSync())
    assert client.receive(folder_list("2"), NOW).action == Done(True)
    assert client.state is DeviceState.READY


@every_version
def test_refused_credentials_halt_with_an_auth_error(version: str) -> None:
    client = DeviceClient(identity(version))
    client.begin(Provision())
    result = client.receive(HttpResponse(401, [("WWW-Authenticate", 'Basic realm="x"')]), NOW)
    assert result.action == Halt(DeviceState.AUTH_FAILED)
    assert result.outcome is Outcome.AUTH_FAILED
    assert "password" in result.summary


# --- remote wipe ----------------------------------------------------------------------------------


@every_version
@every_form
def test_remote_wipe_is_fetched_acknowledged_and_wipes(version: str, form: QueryForm) -> None:
    client = ready_client(version, form)
    client.begin(Sync())
    answer = remote_wipe_needed_answer("Sync", version, policy_key_sent=True)
    result = client.receive(from_answer(answer), NOW)
    fetch = expect_send(result)
    assert parsed(fetch).command == "Provision"
    fetched = ProvisionRequest.from_element(body(fetch))
    if v(version) >= ProtocolVersion.V14_0:
        # Status 140: the empty <Provision/> of MS-ASPROV 3.1.5.1.1.
        assert result.outcome is Outcome.WIPE_REQUESTED
        assert fetched.kind is RequestKind.WIPE_FETCH
        assert client.state is DeviceState.WIPE_PENDING
    else:
        # Below 14.0 a wipe looks like 449 (key sent): the phone provisions as usual.
        assert result.outcome is Outcome.REPROVISION
        assert fetched.kind is RequestKind.INITIAL
    ack = expect_send(client.receive(wipe_directive(version), NOW))
    ack_body = ProvisionRequest.from_element(body(ack))
    assert (ack_body.kind, ack_body.status) == (RequestKind.WIPE_ACK, 1)
    assert client.state is DeviceState.WIPING
    done = client.receive(wbxml(ProvisionResponse(status=1).to_element()), NOW)
    assert done.action == Halt(DeviceState.WIPED)
    assert (client.folders, client.items, client.policy_key) == ({}, {}, 0)
    with pytest.raises(UsageError, match="wiped"):
        client.begin(FolderSync())


# --- busy server --------------------------------------------------------------------------


@every_version
def test_503_with_retry_after_backs_off_that_long_and_resends_the_same_request(
    version: str,
) -> None:
    client = ready_client(version)
    sent = client.begin(FolderSync())
    result = client.receive(HttpResponse(503, [("Retry-After", "17")]), NOW)
    assert result.outcome is Outcome.BACKOFF
    assert result.action == Backoff(17.0, sent)
    assert client.receive(folder_list("2"), NOW).action == Done(True)


def test_retry_after_as_a_date_counts_from_now() -> None:
    client = ready_client("16.1")
    client.begin(FolderSync())
    when = email.utils.formatdate(NOW + 42, usegmt=True)
    result = client.receive(HttpResponse(503, [("Retry-After", when)]), NOW)
    assert isinstance(result.action, Backoff)
    assert result.action.seconds == pytest.approx(42.0)


def test_503_without_retry_after_backs_off_exponentially_then_gives_up() -> None:
    client = ready_client("16.1")
    client.begin(FolderSync())
    waits = []
    for _ in range(MAX_BACKOFFS):
        result = client.receive(HttpResponse(503), NOW)
        assert isinstance(result.action, Backoff)
        waits.append(result.action.seconds)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert client.receive(HttpResponse(503), NOW).action == Done(False)
    assert client.state is DeviceState.READY


# --- folders, sync, ping ----------------------------------------------------------------------


@every_version
@every_form
def test_sync_does_the_initial_round_then_fetches_items(version: str, form: QueryForm) -> None:
    client = ready_client(version, form)
    first = client.begin(Sync())
    first_body = SyncRequest.from_element(body(first))
    assert first_body.collections is not None
    assert (first_body.collections[0].sync_key, first_body.collections[0].collection_id) == (
        "0",
        INBOX,
    )
    changes = SyncRequest.from_element(body(expect_send(client.receive(sync_answer("1"), NOW))))
    assert changes.collections is not None
    assert changes.collections[0].get_changes is True
    more = client.receive(
        sync_answer("2", (mail("5:1", "one"), mail("5:2", "two")), more=True), NOW
    )
    expect_send(more)
    last = client.receive(sync_answer("3", (mail("5:3", "three"),)), NOW)
    assert last.action == Done(True)
    assert last.details["items"] == 1
    assert last.details["subjects"] == ["three"]
    assert sorted(i.subject or "" for i in client.items[INBOX].values()) == ["one", "three", "two"]
    assert client.sync_keys[INBOX] == "3"


def test_sync_invalid_key_restarts_the_folder_from_zero() -> None:
    client = ready_client("14.1")
    client.begin(Sync())
    client.receive(sync_answer("1"), NOW)
    result = client.receive(sync_answer("1", status=3), NOW)
    assert result.outcome is Outcome.RESYNC
    request = SyncRequest.from_element(body(expect_send(result)))
    assert request.collections is not None
    assert request.collections[0].sync_key == "0"


def test_sync_of_an_unknown_client_runs_folder_sync_first() -> None:
    client = DeviceClient(identity("16.1"))
    first = client.begin(Sync())
    assert parsed(first).command == "FolderSync"
    then = expect_send(client.receive(folder_list(), NOW))
    assert parsed(then).command == "Sync"


def test_sync_of_a_folder_the_server_does_not_have_fails_the_step() -> None:
    client = ready_client("16.1")
    first = client.begin(Sync(("Archive",)))
    assert parsed(first).command == "FolderSync"
    result = client.receive(folder_list("2"), NOW)
    assert result.action == Done(False)
    assert "Archive" in result.summary


@every_version
def test_ping_expiry_and_changes_then_syncs_the_changed_folder(version: str) -> None:
    client = ready_client(version)
    client.begin(Ping(120))
    expired = client.receive(ping_answer(1), NOW)
    assert expired.action == Done(True)
    assert "120 s" in expired.summary
    client.begin(Ping(120))
    changed = client.receive(ping_answer(2, (INBOX,)), NOW)
    assert changed.details["changed_folders"] == ["Inbox"]
    follow = expect_send(changed)
    assert parsed(follow).command == "Sync"


def test_ping_heartbeat_out_of_range_retries_with_the_allowed_value() -> None:
    client = ready_client("16.1")
    client.begin(Ping(10))
    result = client.receive(ping_answer(5, heartbeat_interval=60), NOW)
    retry = expect_send(result)
    assert body(retry).child_text("HeartbeatInterval") == "60"


# --- other commands and request shapes -----------------------------------------------------------


@every_version
@every_form
def test_send_mail_is_mime_below_14_and_compose_mail_from_14(version: str, form: QueryForm) -> None:
    client = ready_client(version, form)
    request = client.begin(SendMail(to="bob@example.com", subject="Hi"))
    line = parsed(request)
    assert line.command == "SendMail"
    if v(version) < ProtocolVersion.V14_0:
        # MS-ASHTTP 2.2.1.1.1.2.5: SaveInSent rides in the query below 14.0.
        assert line.save_in_sent
        assert request.header("Content-Type") == "message/rfc822"
        assert b"Subject: Hi" in request.body
    else:
        sent = SendMailRequest.from_element(body(request))
        assert sent.summary().to == ("bob@example.com",)
        assert sent.save_in_sent_items
    assert client.receive(HttpResponse(200), NOW).action == Done(True)


@every_version
@every_form
def test_every_request_line_parses_back(version: str, form: QueryForm) -> None:
    client = ready_client(version, form)
    for step in (FolderSync(), Settings(), Sync(), Ping(60)):
        line = parsed(client.begin(step))
        assert line.form == form.value
        assert line.protocol_version == v(version)
        assert line.device_id == "DEV0001"
        client.abandon("test", NOW)


def test_options_fails_when_the_server_lacks_the_version() -> None:
    client = DeviceClient(identity("16.1"))
    request = client.begin(Options())
    assert request.method == "OPTIONS"
    result = client.receive(
        HttpResponse(
            200, [("MS-ASProtocolVersions", "12.1,14.0"), ("MS-ASProtocolCommands", "Sync")]
        ),
        NOW,
    )
    assert result.action == Done(False)
    assert "12.1,14.0" in result.summary


def test_other_global_status_fails_the_step_naming_it() -> None:
    client = ready_client("16.1")
    client.begin(FolderSync())
    result = client.receive(from_answer(status_answer("FolderSync", 110, "16.1")), NOW)
    assert result.action == Done(False)
    assert "ServerError" in result.summary


# --- state machine rules ------------------------------------------------------------------


def test_illegal_transition_names_state_and_event() -> None:
    client = DeviceClient(identity())
    with pytest.raises(IllegalTransition, match=r"FINAL_KEY_RECEIVED .* NEW"):
        next_state(client.state, Event.FINAL_KEY_RECEIVED)


def test_begin_while_a_step_is_in_flight_is_a_usage_error() -> None:
    client = DeviceClient(identity())
    client.begin(Provision())
    with pytest.raises(UsageError, match="still in flight"):
        client.begin(FolderSync())


@given(st.binary(max_size=200), st.sampled_from([200, 400, 404, 500, 501, 507]))
def test_any_answer_to_any_step_gives_a_result_never_an_exception(data: bytes, status: int) -> None:
    for step in (Provision(), FolderSync(), Sync(), Ping(60), Settings()):
        client = ready_client("16.1")
        client.begin(step)
        result = client.receive(HttpResponse(status, body=data), NOW)
        assert result.outcome in tuple(Outcome)


Answer = Callable[[str], HttpResponse]

ANSWER_POOL: st.SearchStrategy[Answer] = st.sampled_from(
    [
        lambda ver: provision_initial(ver),
        lambda ver: provision_final(ver),
        lambda ver: wipe_directive(ver),
        lambda ver: folder_list(),
        lambda ver: sync_answer("1", (mail("5:1", "x"),)),
        lambda ver: ping_answer(1),
        lambda ver: ping_answer(2, (INBOX,)),
        lambda ver: from_answer(blocked_answer("Sync", ver)),
        lambda ver: from_answer(provisioning_needed_answer("Sync", ver, 144)),
        lambda ver: from_answer(remote_wipe_needed_answer("Sync", ver, policy_key_sent=True)),
        lambda ver: HttpResponse(503, [("Retry-After", "1")]),
        lambda ver: HttpResponse(401),
        lambda ver: HttpResponse(500),
    ]
)


@given(
    st.sampled_from(VERSIONS),
    st.lists(ANSWER_POOL, min_size=1, max_size=120),
)
def test_any_sequence_of_answers_keeps_the_state_machine_sound(
    version: str, answers: list[Answer]
) -> None:
    client = DeviceClient(identity(version))
    script: list[Step] = [Provision(), FolderSync(), Sync(), Ping(60), Sync()]
    feed = iter(answers)
    for step in script:
        if client.state is DeviceState.WIPED:
            break
        client.begin(step)
        exchanges = 0
        while exchanges < 200:
            answer = next(feed, None)
            if answer is None:
                client.abandon("out of answers", NOW)
                break
            exchanges += 1
            result = client.receive(answer(version), NOW)
            if isinstance(result.action, Done | Halt):
                break
        # Every step ends within its exchange bound, whatever the server says.
        assert exchanges <= 65
        assert not client.busy
        # A blocked device knows why; a wiped device holds nothing from the server.
        if client.state is DeviceState.BLOCKED:
            assert client.block is not None
        if state_of(client) is DeviceState.WIPED:
            assert (client.folders, client.items, client.policy_key) == ({}, {}, 0)
        assert client.state not in (
            DeviceState.PROVISIONING,
            DeviceState.ACKNOWLEDGING,
            DeviceState.WIPE_PENDING,
            DeviceState.WIPING,
        )
