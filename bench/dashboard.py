"""The dashboard's cost: the control plane's CPU with a page open vs closed, and each view's
time to first render (`python -m bench.dashboard`; needs chromium + chromium-driver).

```
Demo (mesh serve --dashboard) ─> /proc/<serve pid>/stat utime+stime over WINDOW_S:
   1. no page open      2. headless Chromium on / (htmx refresh every 2 s)
   3. the workload view (edges + live tap and top: the fan-in runs in the same process)
   4. the page left (about:blank): the tap subscription ends after dashboard.tap.IDLE_S
   then each view once: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd
```

The numbers go to docs/dashboard.md by hand (they depend on the machine).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

from turnout.cli.demo import DEMO_MANIFESTS
from turnout.dashboard.tap import IDLE_S
from turnout.demo.orchestrate import EXAMPLES, HOST, Demo

WINDOW_S = 30.0
VIEWS = ("/", "/workloads/emojivoto/deployment/web-v1", "/routes", "/rejected")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percent(pid: int) -> float:
    start, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(WINDOW_S)
    return 100 * (cpu_seconds(pid) - start) / (time.monotonic() - t0)


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(shutil.which("chromium"))
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=opts)


def main() -> None:
    demo = Demo(examples=EXAMPLES / DEMO_MANIFESTS, rps=10)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(demo.start())
    try:
        pid = demo.pids["serve"]
        url = f"http://{HOST}:{demo.ports.dashboard}"
        closed = percent(pid)
        driver = browser()
        try:
            driver.get(url + "/")
            opened = percent(pid)
            driver.get(url + VIEWS[1])
            workload = percent(pid)
            driver.get("about:blank")
            time.sleep(IDLE_S + 1)  # the subscription's idle timeout, then measure
            left = percent(pid)
            for view in VIEWS:
                driver.get(url + view)
                ms = driver.execute_script(
                    "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd;"
                )
                print(f"dashboard first render {view}: {float(ms):.0f} ms")
        finally:
            driver.quit()
        print(f"control plane CPU, dashboard closed: {closed:.1f}% of a core ({WINDOW_S:g}s)")
        print(f"control plane CPU, / open (refresh 2s): {opened:.1f}% of a core ({WINDOW_S:g}s)")
        print(f"control plane CPU, {VIEWS[1]} open (edges, tap, top): {workload:.1f}% of a core")
        print(f"control plane CPU, the page left: {left:.1f}% of a core")
    finally:
        loop.run_until_complete(demo.stop())
        loop.close()


if __name__ == "__main__":
    main()
