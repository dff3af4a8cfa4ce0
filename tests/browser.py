"""A headless Chromium driven through the DevTools protocol, as much of it as the browser test
needs: open a page, wait for it, type, take a screenshot. No driver package: the protocol is
JSON over a websocket (aiohttp's client, which the server side brings already)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import time
import urllib.request
from pathlib import Path

# Chromium's own background traffic (updates, sync, metrics) is off: nothing leaves the machine.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


class Browser:
    def __init__(self, executable: str, profile: Path):
        self.executable, self.profile = executable, Path(profile)
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)

    def __enter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
        page = next(t for t in targets if t["type"] == "page")
        self.socket = self.loop.run_until_complete(self._connect(page["webSocketDebuggerUrl"]))
        return self

    async def _connect(self, url: str):
        import aiohttp

        self.session = aiohttp.ClientSession()
        return await self.session.ws_connect(url, max_msg_size=0)

    def __exit__(self, *_) -> None:
        self.loop.run_until_complete(self.socket.close())
        self.loop.run_until_complete(self.session.close())
        self.loop.close()
        self.process.terminate()
        self.process.wait(timeout=30)

    def call(self, method: str, **params) -> dict:
        """One DevTools command and its result (events in between are skipped)."""
        return self.loop.run_until_complete(self._call(method, params))

    async def _call(self, method: str, params: dict) -> dict:
        call_id = next(self.ids)
        await self.socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive(timeout=60)).data)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)

    def wait_for_class(self, name: str, seconds: float) -> bool:
        """Wait until the page's body has class `name` (textual-serve's script sets -first-byte
        once the chat has drawn something)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.evaluate(f"document.body && document.body.classList.contains({json.dumps(name)})"):
                return True
            time.sleep(0.2)
        return False

    def type(self, text: str) -> None:
        """Type into the terminal: its hidden text area takes the keys, as when a person clicks it."""
        self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        for ch in text:
            if ch == "\r":
                self.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13)
                self.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
            else:
                self.call("Input.insertText", text=ch)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
