"""``tv-platform superset up|down|status|import|screenshot``: argument parsing and dispatch, nothing else — the service
(``tv_platform/stack/superset.py``) and the engine (``tv_platform/engines/superset/``) do the work."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_superset_parser(sub) -> None:
    p = sub.add_parser("superset",
                       help="Superset with the dashboards of superset_exports/ (up|down|status|import|screenshot)")
    act = p.add_subparsers(dest="superset_action", required=True)
    up = act.add_parser("up", help="install (own virtualenv), initialize, start on 127.0.0.1:8088, import the bundle")
    up.add_argument("--no-import", action="store_true", help="do not (re)import superset_exports/")
    act.add_parser("down", help="stop the Superset that `up` started")
    act.add_parser("status", help="state, pid, memory and URL")
    act.add_parser("import", help="(re)import superset_exports/ into the running Superset")
    sc = act.add_parser("screenshot", help="render every dashboard in headless Chromium and save screenshots")
    sc.add_argument("--out", default="test-artifacts", help="directory for the PNG files (default: test-artifacts)")


def superset_command(args: argparse.Namespace) -> int:
    from tv_platform.engines.superset.bundle import import_bundle
    from tv_platform.stack.superset import SupersetService, superset_up
    from tv_platform.settings import get_settings

    settings = get_settings()
    svc = SupersetService(settings)
    action = args.superset_action
    if action == "up":
        superset_up(settings, import_bundle=not args.no_import, progress=lambda m: print(m, flush=True))
        return 0
    if action == "down":
        print("superset: stopped" if svc.stop() else "superset: was not running")
        return 0
    if action == "status":
        st = svc.status()
        print(f"{'service':<12}{'state':<10}{'pid':>8}{'RSS MiB':>10}  endpoint")
        print(f"{'superset':<12}{st['state']:<10}{st['pid'] or '-':>8}{st['memory_mb']:>10.0f}  {st['url']}")
        return 0 if st["state"] == "up" else 3
    if action == "import":
        res = import_bundle(settings, svc.conf)
        print(f"imported: {', '.join(res['dashboards'])} ({res['charts']} charts)")
        return 0
    if action == "screenshot":
        return 0 if screenshot_dashboards(svc.conf, Path(args.out)) else 1
    return 2


def screenshot_dashboards(conf, out: Path, print_=print) -> bool:
    """Render every dashboard of the Superset at ``conf`` into ``out/superset-<slug>.png``; False if any chart had a
    problem (each is printed)."""
    from tv_platform.engines.superset.browser import Browser, render_dashboard
    from tv_platform.engines.superset.client import SupersetClient

    ok = True
    with Browser() as browser:
        for d in SupersetClient(conf).dashboards():
            slug = d["slug"] or str(d["id"])
            res = render_dashboard(slug, out / f"superset-{slug}.png", conf, browser=browser)
            print_(f"{slug}: {len(res.charts)} charts in {res.seconds:.0f}s -> {res.screenshot}")
            for problem in res.problems:
                print_(f"  {problem}")
                ok = False
    return ok
