"""Repeated failed logins of one name from one host lock that pair out for a while."""

from __future__ import annotations

import pytest

from glade.errors import AuthenticationError
from glade.superlink.accounts import Accounts, Role
from glade.superlink.login_throttle import LoginThrottle, peer_host
from glade.superlink.sqlite_state import SqliteState

HOST_A, HOST_B = "ipv4:10.0.0.5:51000", "ipv4:10.0.0.6:40000"


@pytest.fixture
def setup() -> tuple[Accounts, list[float]]:
    ticks = [0.0]
    throttle = LoginThrottle(max_failures=3, lockout_s=30.0, clock=lambda: ticks[0])
    accounts = Accounts(SqliteState(":memory:"), password_log_n=10, throttle=throttle)
    accounts.create_user("ana", Role.USER, password="correct horse")
    return accounts, ticks


def test_lockout_after_failures_then_it_expires_and_doubles(setup) -> None:
    accounts, ticks = setup
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="wrong user name or password"):
            accounts.login(username="ana", password="guess", peer=HOST_A)
    # locked: even the right password is refused, without saying whether it was right
    with pytest.raises(
        AuthenticationError,
        match=r"too many failed logins for 'ana' from 10\.0\.0\.5: try again in 30 s",
    ):
        accounts.login(username="ana", password="correct horse", peer=HOST_A)
    # another host is not affected (an attacker cannot lock the user out)
    assert accounts.login(username="ana", password="correct horse", peer=HOST_B).user == "ana"
    ticks[0] = 31.0
    assert accounts.login(username="ana", password="correct horse", peer=HOST_A).user == "ana"
    # a success clears the count; a second lockout of the pair lasts twice as long
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            accounts.login(username="ana", password="guess", peer=HOST_A)
    with pytest.raises(AuthenticationError, match="try again in 30 s"):
        accounts.login(username="ana", password="guess", peer=HOST_A)


def test_repeat_offender_waits_longer() -> None:
    ticks = [0.0]
    throttle = LoginThrottle(max_failures=2, lockout_s=10.0, clock=lambda: ticks[0])
    for expected in (10, 20, 40):
        throttle.failed("bob", "h")
        throttle.failed("bob", "h")
        with pytest.raises(AuthenticationError, match=f"try again in {expected} s"):
            throttle.check("bob", "h")
        ticks[0] += expected + 1
        throttle.check("bob", "h")


def test_unknown_users_are_throttled_too_and_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_failures=1, max_keys=3, clock=lambda: 0.0)
    for i in range(10):
        throttle.failed(f"user{i}", "h")
    with pytest.raises(AuthenticationError):
        throttle.check("user9", "h")
    throttle.check("user0", "h")  # forgotten: only the newest 3 pairs are kept


def test_peer_host() -> None:
    assert peer_host("ipv4:10.0.0.5:51000") == "10.0.0.5"
    assert peer_host("ipv6:[::1]:51000") == "::1"
    assert peer_host("unix:/tmp/sock") == "unix:/tmp/sock"
