"""The README's "Adding a provider" example runs as written: registered, loaded, sent, parsed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from aiohttp import web

from batchrun.mock.loop_thread import LoopThread
from tests.conftest import write_job, write_rows

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("### Adding a provider", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Adding a provider section has no python block"
    return match.group(1)


class EchoServer:
    """A loopback server of the made-up API: POST /generate, {"prompt"} in, {"text"} out."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.keys: list[str | None] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._thread = LoopThread(self._start, self._stop, name="echo-server")

    async def _generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.keys.append(request.headers.get("X-Key"))
        return web.json_response({"text": f"echo: {body['prompt']}", "in": 3, "out": 2})

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/generate", self._generate)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> EchoServer:
        self._thread.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.__exit__(*exc)


def test_the_readme_wire_format_example_runs_a_job_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "echo_format.py").write_text(readme_example())
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"hello {i}"} for i in range(3)])
    with EchoServer() as server:
        job = write_job(tmp_path, base_url=server.url,
                        provider={"api": "echo", "api_key_env": "ECHO_KEY"})
        script = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            import echo_format  # registers api = "echo", as the README says to
            import batchrun
            summary = batchrun.run({str(job)!r})
            frame = batchrun.read({str(tmp_path / "out")!r}).sort_values("id")
            print(summary.ok, "|".join(frame["content"]), int(frame["total_tokens"].sum()),
                  sep="\\n")
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "ECHO_KEY": "k-123"},
                             timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["3", "echo: hello 0|echo: hello 1|echo: hello 2", "15"]
    assert sorted(str(b["prompt"]) for b in server.bodies) == ["hello 0", "hello 1", "hello 2"]
    assert server.keys == ["k-123"] * 3
