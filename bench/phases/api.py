"""7. The API: what `/v1/chat/completions` adds to a call over the upstream called directly,
at 1 and 50 clients, streamed and not, with the CPU each call costs; measured in the same
run, the same way, against LiteLLM's proxy pointed at the same simulator.

Each target is one process (one uvicorn of the stack; LiteLLM with one worker). Overhead =
(the client's whole call) − (upstream answered − upstream received) for that call, matched
by the response id both pass on. LiteLLM runs from its own virtual environment
(`var/bench-litellm/`, made on first use), never the app's requirements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import Mode, log, summary
from bench.load import DirectCall as Call
from bench.load import read_stream, run_concurrently
from bench.meters import TICKS, _children, _server_ticks, tree_cpu_seconds
from bench.stack import ROOT, Stack, answers, free_port

LITELLM = "litellm[proxy]==1.108.7"
LITELLM_ENV = ROOT / "var" / "bench-litellm"
LITELLM_KEY = "sk-bench-master"
MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...]
    rounds: dict[int, int]
    latency: float
    warm_up: int
    litellm: bool


FULL = Plan(levels=(1, 50), rounds={1: 60, 50: 8}, latency=0.05, warm_up=20, litellm=True)
SMOKE = Plan(levels=(1, 2), rounds={1: 3, 2: 2}, latency=0.02, warm_up=2, litellm=False)


@dataclass
class Target:
    name: str
    base_url: str  # ends in /v1
    keys: list[str]
    pids: list[int]
    databases: bool = False  # count PostgreSQL's CPU too (the app's writes per call)
    calls: list[Call] = field(default_factory=list)


def call(session: requests.Session, target: Target, key: str, text: str, stream: bool) -> Call:
    """One call, read to its end (a stream to [DONE])."""
    result = Call()
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}
    started = time.perf_counter()
    try:
        with session.post(
            f"{target.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            stream=stream,
            timeout=(5, 60),
        ) as response:
            response.raise_for_status()
            if not stream:
                result.response_id = response.json()["id"]
                result.elapsed = time.perf_counter() - started
                return result
            if read_stream(response, result, started):
                return result
        result.error = "stream ended without [DONE]"
    except (requests.RequestException, ValueError, KeyError) as error:
        result.error = f"{type(error).__name__}: {error}"[:300]
    return result


def _cpu(target: Target) -> dict[str, float]:
    seconds = {"process": tree_cpu_seconds(target.pids, _children())}
    if target.databases:
        seconds["postgresql"] = _server_ticks({"postgres"})["postgres"] / TICKS
    return seconds


def _level(stack: Stack, target: Target, clients: int, rounds: int, stream: bool, tag: str):
    calls: list[Call] = []
    lock = threading.Lock()

    def job(index: int) -> None:
        session = requests.Session()
        key = target.keys[index % len(target.keys)]
        for round_ in range(rounds):
            made = call(session, target, key, f"{tag} {index} {round_}", stream)
            with lock:
                calls.append(made)

    before = _cpu(target)
    run_concurrently(clients, job)
    after = _cpu(target)
    timings = stack.simulator_timings()
    overheads = [
        c.elapsed - (timings[c.response_id]["answered"] - timings[c.response_id]["received"])
        for c in calls
        if not c.error and c.response_id in timings
    ]
    done = sum(1 for c in calls if not c.error)
    cpu = {part: (after[part] - before[part]) * 1000 / max(done, 1) for part in after}
    return {
        "clients": clients,
        "stream": stream,
        "calls": len(calls),
        "failures": [c.error for c in calls if c.error],
        "unmatched": done - len(overheads),
        "overhead": summary(overheads),
        "elapsed": summary([c.elapsed for c in calls if not c.error]),
        "cpu_ms_per_call": cpu,
    }


def _measure(stack: Stack, plan: Plan, target: Target) -> list[dict]:
    stack.simulator_control(reset=True, latency=plan.latency, token_delay=0)
    session = requests.Session()
    for index in range(plan.warm_up):  # pools, imports and caches, not measured
        for stream in (False, True):
            call(session, target, target.keys[0], f"warm-up {index}", stream)
    levels = []
    for stream in (False, True):
        for clients in plan.levels:
            rounds = plan.rounds[clients]
            log(f"api: {target.name}, {clients} client(s) x {rounds}, stream={stream}")
            stack.simulator_control(reset=True, latency=plan.latency, token_delay=0)
            levels.append(_level(stack, target, clients, rounds, stream, f"{target.name}"))
    return levels


def _keys(count: int) -> list[str]:
    """One person and key per client: each person's limits are their own."""
    from django.contrib.auth.models import User

    from conversations.api import services

    keys = []
    for index in range(count):
        user, _ = User.objects.get_or_create(username=f"bench-api-{index}")
        keys.append(services.api_key_create(user=user, name="bench")[1])
    return keys


def api(stack: Stack, mode: Mode) -> dict[str, Any]:
    plan = FULL if mode.name == "full" else SMOKE
    clients = max(plan.levels)
    web = stack.process("web-0")
    targets = [
        Target(
            "direct", f"{stack.simulator_root}/v1", ["sk-bench"],
            [stack.process("simulator").pid],
        ),
        Target(
            "chatsite", f"{stack.url_for(0)}/v1", _keys(clients), [web.pid],
            databases=stack.on_servers,
        ),
    ]  # fmt: skip
    results: dict[str, Any] = {"latency": plan.latency, "targets": {}}
    litellm = None
    if plan.litellm or os.environ.get("BENCH_LITELLM"):
        try:
            litellm = LiteLLM(stack)
            litellm.start()
            targets.append(Target("litellm", litellm.base_url, [LITELLM_KEY], [litellm.pid]))
            results["litellm_version"] = LITELLM
        except Exception as error:  # no network for pip, or it would not start
            results["litellm_error"] = f"{type(error).__name__}: {error}"[:500]
            log(f"api: LiteLLM not measured ({results['litellm_error']})")
    try:
        for target in targets:
            results["targets"][target.name] = _measure(stack, plan, target)
    finally:
        if litellm:
            litellm.stop()
    return results


class LiteLLM:
    """LiteLLM's proxy (one worker, no database) routing `gpt-4o-mini` to the simulator."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None
        self.log_path = stack.workdir / "logs" / "litellm.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    def install(self) -> Path:
        command = LITELLM_ENV / "bin" / "litellm"
        marker = LITELLM_ENV / ".installed"
        if marker.exists() and marker.read_text() == LITELLM:
            return command
        log(f"api: installing {LITELLM} into {LITELLM_ENV} (once)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LITELLM_ENV)], check=True)
        pip = str(LITELLM_ENV / "bin" / "pip")
        subprocess.run(
            [pip, "install", "--quiet", "--disable-pip-version-check", LITELLM],
            check=True,
            timeout=900,
        )
        marker.write_text(LITELLM)
        return command

    def start(self) -> None:
        command = self.install()
        config = self.stack.workdir / "litellm.yaml"
        config.write_text(
            json.dumps(
                {
                    "model_list": [
                        {
                            "model_name": MODEL,
                            "litellm_params": {
                                "model": f"openai/{MODEL}",
                                "api_base": f"{self.stack.simulator_root}/v1",
                                "api_key": "sk-bench",
                            },
                        }
                    ],
                    "general_settings": {"master_key": LITELLM_KEY},
                    "litellm_settings": {"drop_params": True, "telemetry": False},
                }
            )
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.stack.workdir),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from the internet at start
            "LITELLM_LOG": "ERROR",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_file = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(command), "--config", str(config), "--port", str(self.port), "--num_workers", "1"],
            cwd=self.stack.workdir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"LiteLLM did not start: {self.log_path.read_text()[-800:]}")
            time.sleep(0.2)
        while time.monotonic() < deadline:  # listening, then ready to route
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("LiteLLM never said it was live")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "log_file", None):
            self.log_file.close()
