"""Headless Chromium driven over the DevTools protocol (a websocket, through aiohttp): open a
page with an Authorization header, press keys, type, read the DOM, take screenshots. Enough to
use the traces page as a keyboard user does, without Selenium or Playwright.

    with Chromium(binary, profile) as browser:
        browser.go(url)
        browser.press("Tab")
        browser.eval("document.activeElement.textContent")
        browser.screenshot(path)

Every wait is bounded (generous: the machine is shared); the browser process is always killed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Chromium", "near", "png_colours"]

_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-port=0", "--window-size=1280,900",
)  # fmt: skip
_KEYS = {
    "Tab": {"key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9},
    "Enter": {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"},
    "Space": {"key": " ", "code": "Space", "windowsVirtualKeyCode": 32, "text": " "},
}
TIMEOUT_S = 90.0


class Chromium:
    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 900):
        self.binary, self.profile, self.width, self.height = binary, profile, width, height
        self.loop = asyncio.new_event_loop()
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        self.proc = subprocess.Popen(
            [self.binary, *_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.loop.run_until_complete(self._attach())
            self.call("Page.enable")
            self.call("Network.enable")
            self.call("Page.setBypassCSP", enabled=True)  # so Runtime.evaluate may read the DOM
            self.call(
                "Emulation.setDeviceMetricsOverride",
                width=self.width,
                height=self.height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self.ws is not None:
                await self.ws.close()
            if self.session is not None:
                await self.session.close()

        with contextlib.suppress(Exception):
            self.loop.run_until_complete(close())
        self.loop.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)

    async def _attach(self) -> None:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while not port_file.is_file() or not port_file.read_text().strip():
            assert self.proc is not None and self.proc.poll() is None, "Chromium exited"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.session = aiohttp.ClientSession()
        while True:
            async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json(content_type=None)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            assert time.monotonic() < deadline, "Chromium opened no page"
            await asyncio.sleep(0.1)
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        msg_id = next(self.ids)
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive(timeout=TIMEOUT_S)).data)
            if msg.get("id") == msg_id:
                assert "error" not in msg, f"{method}: {msg['error']}"
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.loop.run_until_complete(self._call(method, params))

    def _wait_event(self, method: str, after: int) -> None:
        async def wait() -> None:
            assert self.ws is not None
            while not any(e.get("method") == method for e in self.events[after:]):
                msg = json.loads((await self.ws.receive(timeout=TIMEOUT_S)).data)
                self.events.append(msg)

        self.loop.run_until_complete(wait())

    def headers(self, headers: dict[str, str]) -> None:
        self.call("Network.setExtraHTTPHeaders", headers=headers)

    def go(self, url: str) -> None:
        mark = len(self.events)
        self.call("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired", mark)

    def press(self, key: str, wait_load: bool = False) -> None:
        """Press and release a key; with `wait_load`, wait for the page it leads to."""
        mark = len(self.events)
        spec = _KEYS[key]
        self.call("Input.dispatchKeyEvent", type="keyDown", **spec)
        self.call(
            "Input.dispatchKeyEvent", type="keyUp", **{k: v for k, v in spec.items() if k != "text"}
        )
        if wait_load:
            self._wait_event("Page.loadEventFired", mark)

    def type(self, text: str) -> None:
        self.call("Input.insertText", text=text)

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def tab_to(self, predicate: str, limit: int = 80) -> None:
        """Press Tab until `predicate` (JS over `el`, the focused element) holds."""
        for _ in range(limit):
            self.press("Tab")
            if self.eval(f"(el => !!({predicate}))(document.activeElement)"):
                return
        raise AssertionError(f"{limit} Tabs never reached an element where {predicate}")

    def screenshot(self, path: Path, full_page: bool = True) -> bytes:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            height = int(self.eval("document.documentElement.scrollHeight"))
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.write_bytes(data)
        return data


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def png_colours(png: bytes) -> tuple[int, int, Counter[tuple[int, int, int]]]:
    """Width, height and the RGB colour counts of an 8-bit RGB(A) PNG (what Chromium writes)."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    colours: Counter[tuple[int, int, int]] = Counter()
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride) if kind else ():
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            line[x] = (line[x] + (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]) & 0xFF
        colours.update(zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True))
        prev = line
    return width, height, colours


def near(
    colours: Counter[tuple[int, int, int]], rgb: tuple[int, int, int], tolerance: int = 4
) -> int:
    """How many pixels are within `tolerance` of `rgb` in every channel."""
    return sum(
        n
        for c, n in colours.items()
        if all(abs(a - b) <= tolerance for a, b in zip(c, rgb, strict=True))
    )
