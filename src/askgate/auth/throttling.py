"""The login, registration and account-change limits of one request: the app's
limiter (askgate.throttle) bound to the client's address (askgate.client_ip:
an IPv4 address, or an IPv6 address's /64 network) or to the caller."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from askgate.auth.deps import CurrentUser
from askgate.client_ip import ClientLimitKey
from askgate.runtime import RuntimeDep
from askgate.throttle import LoginAttempt, Throttle


@dataclass(frozen=True, slots=True)
class LoginGuard:
    """Login throttling bound to one request's client address.

    Whatever checks a password for an account (a login, or the current password
    of a password change) calls `begin` before verifying it, and `succeeded`
    after a right one: a wrong one needs no call, its count stays.
    """

    throttle: Throttle
    client_ip: str  # as the limits count it: an IPv6 client's /64 (limit_key)

    async def begin(self, username: str) -> LoginAttempt:
        return await self.throttle.begin_login(
            username=username, client_ip=self.client_ip
        )

    async def succeeded(self, attempt: LoginAttempt) -> None:
        await self.throttle.login_succeeded(attempt)


async def get_login_guard(runtime: RuntimeDep, client: ClientLimitKey) -> LoginGuard:
    return LoginGuard(runtime.limiter, client)


async def limit_registrations(runtime: RuntimeDep, client: ClientLimitKey) -> None:
    await runtime.limiter.count_registration(client)


async def limit_account_changes(runtime: RuntimeDep, user: CurrentUser) -> None:
    await runtime.limiter.count_account_change(user.id)


LoginThrottle = Annotated[LoginGuard, Depends(get_login_guard)]
RegistrationRateLimit = Depends(limit_registrations)
AccountChangeRateLimit = Depends(limit_account_changes)
