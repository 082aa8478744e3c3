"""The same gatekeeper tests, with the fast lane and without: the device cannot tell them apart.

A representative subset of the gatekeeper's integration tests (forwarding, denials per version,
first access, uem-mode provisioning, provisioning with the upstream, persistence and the admin
API) is collected here a second time and run twice, with ``sentry.fast_lane`` on and off,
through a ``start_sentry`` that sets it. The originals keep running in their own modules with
the default configuration.
"""

from __future__ import annotations

from typing import Any

import pytest

import tests.sentry_sim.test_decisions_http as decisions
import tests.sentry_sim.test_first_access as first_access
import tests.sentry_sim.test_forwarding as forwarding
import tests.sentry_sim.test_persistence_admin as persistence
import tests.sentry_sim.test_uem_policy_mode as uem_mode
import tests.sentry_sim.test_upstream_provisioning as upstream
from scenarios.cli_sentry import RunningSentry
from tests.sentry_sim.fakes import StartSentry

# The fixture the upstream-provisioning tests need, and the tests themselves.
exchange = upstream.exchange
test_base64_query_device_is_identified_and_forwarded = (
    decisions.test_base64_query_device_is_identified_and_forwarded
)
test_blocked_device_gets_the_version_correct_answer = (
    decisions.test_blocked_device_gets_the_version_correct_answer
)
test_malformed_request_gets_the_errors_status = (
    decisions.test_malformed_request_gets_the_errors_status
)
test_options_is_never_blocked = decisions.test_options_is_never_blocked
test_push_updates_the_cache_within_a_second = decisions.test_push_updates_the_cache_within_a_second
test_wiped_device_gets_remote_wipe_on_provision_and_140_otherwise = (
    decisions.test_wiped_device_gets_remote_wipe_on_provision_and_140_otherwise
)
test_first_access_reports_once_for_20_concurrent_requests = (
    first_access.test_first_access_reports_once_for_20_concurrent_requests
)
test_uem_down_block_mode_blocks_new_devices_until_the_uem_answers = (
    first_access.test_uem_down_block_mode_blocks_new_devices_until_the_uem_answers
)
test_user_spellings_share_a_record_only_when_the_rule_says_so = (
    first_access.test_user_spellings_share_a_record_only_when_the_rule_says_so
)
test_held_pings_do_not_starve_other_requests = (
    forwarding.test_held_pings_do_not_starve_other_requests
)
test_hop_by_hop_headers_are_stripped_both_ways_and_the_query_passes_unchanged = (
    forwarding.test_hop_by_hop_headers_are_stripped_both_ways_and_the_query_passes_unchanged
)
test_large_bodies_stream_through_both_ways = forwarding.test_large_bodies_stream_through_both_ways
test_upstream_down_answers_503_with_retry_after = (
    forwarding.test_upstream_down_answers_503_with_retry_after
)
test_device_list_explain_stats_and_events = persistence.test_device_list_explain_stats_and_events
test_restart_reloads_decided_records_not_unknown_ones_and_resumes_reports = (
    persistence.test_restart_reloads_decided_records_not_unknown_ones_and_resumes_reports
)
test_two_phase_provision_then_the_final_key_is_enforced = (
    uem_mode.test_two_phase_provision_then_the_final_key_is_enforced
)
test_wrong_acknowledgement_key_gets_policy_status_5 = (
    uem_mode.test_wrong_acknowledgement_key_gets_policy_status_5
)
test_concurrent_requests_share_one_upstream_provisioning = (
    upstream.test_concurrent_requests_share_one_upstream_provisioning
)
test_device_works_through_gatekeeper_and_never_sees_the_upstream_key = (
    upstream.test_device_works_through_gatekeeper_and_never_sees_the_upstream_key
)
test_large_body_is_streamed_and_the_device_is_told_to_retry = (
    upstream.test_large_body_is_streamed_and_the_device_is_told_to_retry
)


@pytest.fixture(params=[True, False], ids=["fast_lane", "aiohttp_only"])
def fast_lane(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def start_sentry(start_sentry: StartSentry, fast_lane: bool) -> StartSentry:
    """The suite's ``start_sentry`` with ``fast_lane`` set (unless a test sets it itself)."""

    async def start(*args: Any, **settings: Any) -> RunningSentry:
        settings.setdefault("fast_lane", fast_lane)
        running: RunningSentry = await start_sentry(*args, **settings)
        assert (running.lane is not None) is settings["fast_lane"]
        return running

    return start
