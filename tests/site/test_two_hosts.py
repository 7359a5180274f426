"""Acceptance test of issue 13 (two hosts, for real): web and worker on two machines.

Host A is this network namespace: a uvicorn web process and a Celery worker on loopback,
with PostgreSQL and Redis. Host B is a network namespace the test makes, joined to A by a
veth pair with addresses in the benchmarking range (RFC 2544, 198.18.0.0/15) and no other
route: its web process and worker reach PostgreSQL, Redis and the simulated upstream
only at host A's veth address (forwarded there from loopback, where they listen), and
the test reaches host B's web process at B's address. A conversation is sent on one host
and read on the other, both ways; a worker killed mid-reply on host A has its reply
finished by host B's worker, and both web processes show it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User

from conversations.models import Completion, Message
from tests.http import Chat, Page, Shown, events, send_and_read
from tests.support import Simulator, WebProcess, WorkerProcess, subprocess_env, wait_for
from tests.support import test_database_url as database_url  # not collected as a test
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.worker

PASSWORD = "two-hosts-password-1"
BENCHMARKING = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544: never routed anywhere
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "http": 80}
COMMAND_TIMEOUT = 10  # seconds for one `ip` command
STREAM_DEADLINE = 30  # seconds for a reply stream to end, recovery included
ANSWERED = re.compile(
    r"Task conversations\.tasks\.run_completion\[[^\]]+\] succeeded in \S+: 'succeeded'"
)


@dataclass
class HostB:
    """The second host: a network namespace, and the services of host A it reaches."""

    namespace: str
    host_a_address: str  # host A's end of the veth pair
    address: str  # host B's own
    proxies: dict[tuple[str, int], TcpProxy] = field(default_factory=dict)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def proxy_for(self, url: str) -> TcpProxy:
        """The forwarder at host A's address to the service at `url` (on loopback)."""
        parts = urlsplit(url)
        return self.proxies[(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])]

    def via_host_a(self, url: str) -> str:
        """`url` (a service on host A's loopback) as host B reaches it."""
        proxy = self.proxy_for(url)
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{proxy.listen_host}:{proxy.port}"
        return urlunsplit(parts._replace(netloc=f"{auth}@{netloc}" if auth else netloc))

    def pids(self) -> set[int]:
        listed = ip("netns", "pids", self.namespace).stdout.split()
        return {int(pid) for pid in listed}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=check
    )


def free_subnet() -> ipaddress.IPv4Network:
    """A /30 of the benchmarking range that no interface here uses, chosen from the pid so
    parallel runs start from different ones."""
    used = [
        ipaddress.IPv4Interface(word).network
        for line in ip("-o", "-4", "addr", "show").stdout.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    count = BENCHMARKING.num_addresses // 4
    for step in range(count):
        index = (os.getpid() + step) % count
        subnet = ipaddress.IPv4Network((int(BENCHMARKING.network_address) + 4 * index, 30))
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise AssertionError("every /30 of 198.18.0.0/15 is in use")


def service_targets(simulator_url: str) -> set[tuple[str, int]]:
    """(host, port) of PostgreSQL, the broker, Redis and the simulator, on loopback."""
    db = settings.DATABASES["default"]
    urls = [settings.CELERY_BROKER_URL, settings.REDIS_URL, simulator_url]
    targets = {(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))}
    for url in urls:
        parts = urlsplit(url)
        targets.add((parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]))
    return targets


@pytest.fixture(scope="module")
def host_b(simulator_server) -> Iterator[HostB]:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" or not (
        settings.REDIS_URL and settings.CELERY_BROKER_URL.startswith("redis")
    ):
        pytest.skip(
            "two hosts need PostgreSQL and Redis (DATABASE_URL=postgres://..., "
            "CELERY_BROKER_URL=redis://..., REDIS_URL=redis://...): they cannot share the "
            "embedded SQLite file and filesystem broker"
        )
    if os.geteuid() != 0:
        pytest.skip("making a network namespace (ip netns add) needs root")
    if shutil.which("ip") is None:
        pytest.skip("cannot make a network namespace: iproute2's `ip` is not installed")
    namespace = f"chatsite-{os.getpid()}"
    added = ip("netns", "add", namespace, check=False)
    if added.returncode != 0:
        pytest.skip(f"cannot make a network namespace (ip netns add): {added.stderr.strip()}")
    veth_a, veth_b = f"cs{os.getpid()}a", f"cs{os.getpid()}b"
    proxies: list[TcpProxy] = []
    try:
        subnet = free_subnet()
        address_a, address_b = (str(address) for address in subnet.hosts())
        ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", namespace)
        if Path("/proc/sys/net/ipv6").exists():
            # No IPv6 on the pair: no link-local chatter (DAD, router solicitations) at all.
            Path(f"/proc/sys/net/ipv6/conf/{veth_a}/disable_ipv6").write_text("1")
            disable_ipv6_b = f"echo 1 > /proc/sys/net/ipv6/conf/{veth_b}/disable_ipv6"
            ip("netns", "exec", namespace, "sh", "-c", disable_ipv6_b)
        ip("addr", "add", f"{address_a}/30", "dev", veth_a)
        ip("link", "set", veth_a, "up")
        ip("-n", namespace, "addr", "add", f"{address_b}/30", "dev", veth_b)
        ip("-n", namespace, "link", "set", veth_b, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        host = HostB(namespace, address_a, address_b)
        for target in service_targets(simulator_server.base_url):
            proxy = TcpProxy(*target, listen_host=address_a, listen_port=target[1]).start()
            proxies.append(proxy)
            host.proxies[target] = proxy
        yield host
    finally:
        for proxy in proxies:
            proxy.close()
        ip("link", "del", veth_a, check=False)  # takes its peer with it
        ip("netns", "del", namespace, check=False)


@dataclass
class TwoHosts:
    host_b: HostB
    web_a: WebProcess
    web_b: WebProcess
    worker_a: WorkerProcess
    worker_b: WorkerProcess
    simulator: Simulator

    def logs(self) -> str:
        processes = [self.web_a, self.web_b, self.worker_a, self.worker_b]
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_path.read_text()[-3000:]}"
            for p in processes
            if p.log_path.exists()
        )

    def log_in(self, web: WebProcess, username: str) -> Chat:
        """Log in on `web` and open a new conversation there. One reverse proxy in front of
        both hosts makes them one site to a browser, so the session's cookies go to both."""
        chat = Chat(username, n=1)
        hosts = (self.web_a.host, self.web_b.host)

        def share_cookies(response: requests.Response, **kwargs) -> None:
            for cookie in response.cookies:
                for host in hosts:
                    chat.session.cookies.set(
                        cookie.name, cookie.value, domain=host, path=cookie.path
                    )

        chat.session.hooks["response"].append(share_cookies)
        chat.page = Page(chat.get(web, "/accounts/login/").text)
        chat.submit(web, "/accounts/login/", username=username, password=PASSWORD)
        assert "sessionid" in chat.session.cookies, f"{username} could not log in"
        chat.path = chat.submit(web, "/c/new/").url.removeprefix(web.url)
        assert re.fullmatch(r"/c/\d+/", chat.path), chat.path
        return chat


@pytest.fixture
def two_hosts_env() -> dict[str, str]:
    """More environment for every process of both hosts (a test parametrizes it)."""
    return {}


@pytest.fixture
def two_hosts(
    transactional_db, simulator: Simulator, host_b: HostB, tmp_path: Path, two_hosts_env
) -> Iterator[TwoHosts]:
    """Web and worker on each host; host B's worker is started by the test (`start`)."""
    # What every host must agree on: the secret, the Redis key prefix (by default derived
    # from the database's address, which each host spells its own way; this test process's
    # own too) and the queue (subprocess_env). Quiet streams say so every second.
    env_a = subprocess_env(
        simulator,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
        DJANGO_ALLOWED_HOSTS=f"127.0.0.1,localhost,{host_b.address}",
        STREAM_HEARTBEAT_SECONDS="1",
        **two_hosts_env,
    )
    env_a.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env_b = env_a | {
        "DATABASE_URL": host_b.via_host_a(database_url()),
        "CELERY_BROKER_URL": host_b.via_host_a(settings.CELERY_BROKER_URL),
        "REDIS_URL": host_b.via_host_a(settings.REDIS_URL),
        "OPENAI_BASE_URL": host_b.via_host_a(simulator.base_url),
    }
    hosts = TwoHosts(
        host_b=host_b,
        web_a=WebProcess(env_a, tmp_path / "web-a.log"),
        web_b=WebProcess(env_b, tmp_path / "web-b.log", host=host_b.address, prefix=host_b.prefix),
        worker_a=WorkerProcess(env_a, tmp_path / "worker-a.log"),
        worker_b=WorkerProcess(env_b, tmp_path / "worker-b.log", beat=True, prefix=host_b.prefix),
        simulator=simulator,
    )
    processes = [hosts.web_a, hosts.web_b, hosts.worker_a, hosts.worker_b]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            for started in [pool.submit(p.start) for p in processes[:3]]:
                started.result()
        yield hosts
    finally:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda process: process.stop(), processes))


def asked(simulator: Simulator) -> list[str]:
    """The last user message of every upstream call, in order."""
    return [body["messages"][-1]["content"] for body in simulator.bodies()]


def test_a_conversation_sent_on_one_host_is_read_on_the_other(two_hosts: TwoHosts):
    hosts = two_hosts
    hosts.worker_b.start()
    assert {hosts.web_b.process.pid, hosts.worker_b.process.pid} <= hosts.host_b.pids()
    assert not {hosts.web_a.process.pid, hosts.worker_a.process.pid} & hosts.host_b.pids()
    User.objects.create_user("alice", password=PASSWORD)

    chat = hosts.log_in(hosts.web_a, "alice")
    # Sent through host A's composer, followed live and reloaded on host B; then back.
    send_and_read(chat, hosts.web_a, hosts.web_b)
    send_and_read(chat, hosts.web_b, hosts.web_a)

    sent = [f"/echo {text}" for text in chat.sent]
    assert asked(hosts.simulator) == sent  # one upstream call per message
    completions = list(Completion.objects.order_by("pk").select_related("request_message"))
    assert [c.request_message.content for c in completions] == sent
    for completion, text in zip(completions, chat.sent, strict=True):
        assert completion.status == Completion.Status.SUCCEEDED, hosts.logs()
        assert completion.attempts == 1
        replies = Message.objects.filter(completion=completion, role=Message.Role.ASSISTANT)
        assert list(replies.values_list("content", flat=True)) == [text]
    answered = [len(ANSWERED.findall(w.log())) for w in (hosts.worker_a, hosts.worker_b)]
    assert sum(answered) == len(sent), (answered, hosts.logs())
    # Host B spoke to PostgreSQL and Redis only through host A's address.
    for url in (database_url(), settings.CELERY_BROKER_URL, settings.REDIS_URL):
        assert hosts.host_b.proxy_for(url).connections, url
    for process in (hosts.web_a, hosts.web_b, hosts.worker_a, hosts.worker_b):
        assert "Traceback" not in process.log_path.read_text(), hosts.logs()


@pytest.mark.parametrize(
    "two_hosts_env",
    # Short leases and a fast sweep (host B's beat) so recovery happens within seconds.
    [{"COMPLETION_LEASE_SECONDS": "3", "COMPLETION_SWEEP_INTERVAL": "0.5"}],
)
def test_a_reply_cut_off_by_a_killed_worker_on_one_host_is_finished_on_the_other(
    two_hosts: TwoHosts,
):
    hosts = two_hosts
    User.objects.create_user("alice", password=PASSWORD)
    chat = hosts.log_in(hosts.web_b, "alice")
    text = "finished on the other host"
    hosts.simulator.control(faults=[{"delay": 30}])  # the first call hangs

    # Sent on host B; host A's worker, the only one running, takes the call.
    assert chat.page is not None
    composer = chat.page.find("id", "composer")["hx-post"]
    headers = {"HX-Request": "true", **chat.page.csrf_header()}
    response = chat.session.post(
        f"{hosts.web_b.url}{composer}",
        data=chat.page.forms[composer] | {"content": f"/echo {text}"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text[:500]
    pending = Page(response.text).find("sse-connect")
    wait_for(lambda: hosts.simulator.requests(), timeout=30, what="host A's call to start")
    hosts.worker_a.kill()
    completion = Completion.objects.get()
    assert completion.status == Completion.Status.RUNNING
    assert completion.attempts == 1

    # A reader on host A's web process follows the reply while host B's worker (with the
    # beat) finds the lease expired and calls again.
    stream = chat.session.get(
        f"{hosts.web_a.url}{pending['sse-connect']}",
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=(5, 20),
    )
    hosts.worker_b.start()
    done = None
    shown = Shown()
    with stream:
        for event, data in events(stream, deadline=time.monotonic() + STREAM_DEADLINE):
            now = shown.apply(event, data)
            if now is not None:
                assert text.startswith(now), (event, data, now)
            elif event == "done":
                done = data
                break
    assert done is not None, hosts.logs()
    assert Page(done).choices == [text]

    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED, hosts.logs()
    assert completion.attempts == 2
    replies = Message.objects.filter(completion=completion, role=Message.Role.ASSISTANT)
    assert list(replies.values_list("content", flat=True)) == [text]
    assert asked(hosts.simulator) == [f"/echo {text}"] * 2  # the cut call, and host B's
    assert ANSWERED.search(hosts.worker_b.log()), hosts.logs()
    assert hosts.host_b.proxy_for(hosts.simulator.base_url).connections
    for web in (hosts.web_a, hosts.web_b):  # a reload on either host
        chat.open(web, chat.path)
        assert chat.page.choices[-1] == text
        assert not any("sse-connect" in values for _, values in chat.page.elements)
    for process in (hosts.web_a, hosts.web_b, hosts.worker_b):
        assert "Traceback" not in process.log_path.read_text(), hosts.logs()
