"""The login and registration limits of one request: the app's limiter
(askgate.throttle) bound to the client's address (askgate.client_ip)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from askgate.client_ip import ClientIP
from askgate.runtime import RuntimeDep
from askgate.throttle import Throttle


@dataclass(frozen=True, slots=True)
class LoginGuard:
    """Login throttling bound to one request's client address."""

    throttle: Throttle
    client_ip: str

    async def begin(self, username: str) -> None:
        await self.throttle.begin_login(username=username, client_ip=self.client_ip)

    async def failed(self) -> None:
        await self.throttle.login_failed(client_ip=self.client_ip)

    async def succeeded(self, username: str) -> None:
        await self.throttle.login_succeeded(username=username)


async def get_login_guard(runtime: RuntimeDep, client_ip: ClientIP) -> LoginGuard:
    return LoginGuard(runtime.limiter, client_ip)


async def limit_registrations(runtime: RuntimeDep, client_ip: ClientIP) -> None:
    await runtime.limiter.count_registration(client_ip)


LoginThrottle = Annotated[LoginGuard, Depends(get_login_guard)]
RegistrationRateLimit = Depends(limit_registrations)
