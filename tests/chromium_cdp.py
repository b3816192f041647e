"""Real headless Chromium driven over the DevTools protocol through ``--remote-debugging-pipe``
(file descriptors 3 and 4, NUL-separated JSON): stdlib only, no websocket client, no driver.
Enough to open a page, click what a person clicks, read the DOM and take a screenshot."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


class Browser:
    """One headless Chromium with one tab. ``resolve`` maps host names to 127.0.0.1 so a page
    can be opened under the server's configured host name."""

    def __init__(self, profile: Path, *, resolve: tuple[str, ...] = (),
                 width: int = 800, height: int = 900) -> None:
        exe = chromium_path()
        assert exe, "chromium is not installed"
        to_child, self._w = os.pipe()
        self._r, from_child = os.pipe()
        # Chromium reads fd 3 and writes fd 4. A tiny Python trampoline moves the pipe ends
        # there and execs Chromium (no preexec_fn, which is unsafe with the server threads
        # running); from fds >= 10 first, so neither move can clobber the other end.
        high_in, high_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child))
        os.close(to_child)
        os.close(from_child)
        rules = ",".join(f"MAP {name} 127.0.0.1" for name in resolve)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "--remote-debugging-pipe"]
        if rules:
            args.append(f"--host-resolver-rules={rules}")
        script = (f"import os, sys; os.dup2({high_in}, 3); os.dup2({high_out}, 4); "
                  f"os.close({high_in}); os.close({high_out}); os.execv(sys.argv[1], sys.argv[1:])")
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args, "about:blank"],
                                     pass_fds=(high_in, high_out), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(high_in)
        os.close(high_out)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.call("Page.enable", session=self.session)

    def call(self, method: str, *, session: str | None = None, timeout: float = 30,
             **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply["result"])
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(method)
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise EOFError("chromium closed the pipe")
                self._buf += chunk

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=self.session, expression=expression,
                           returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15) -> Any:
        """Poll ``expression`` until it is truthy (a page load, a form's answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:  # the page navigated mid-evaluation
                value = None
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(expression)

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=self.session, url=url)
        self.wait_for(f"document.readyState === 'complete' && location.href === {url!r}")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element's first box (a link that wraps has
        one box per line; the middle of their union may be in neither)."""
        box = self.eval(f"(() => {{ const r = document.querySelector({selector!r})"
                        ".getClientRects()[0]; return [r.x + r.width / 2, "
                        "r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=self.session, type=kind, x=box[0],
                      y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", session=self.session,
                                          format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._w)
        os.close(self._r)
