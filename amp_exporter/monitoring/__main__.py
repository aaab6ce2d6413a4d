"""python -m amp_exporter.monitoring [--check] [--root DIR]
python -m amp_exporter.monitoring [--rules DIR] [--dashboards DIR] [--deployment exporter|textfile]
    [--selector S] [--cluster-label NAME] [--runbook-url-base URL]

Writes the generated alert rules, recording rules, Alertmanager example, promtool tests,
dashboards, Grafana provisioning examples and runbooks under DIR (default: the
repository). With --check nothing is written: exit 1 and list the files that differ
(or that are left over in docs/runbooks and alerts/tests), exit 0 when all are current.

With --rules, only the alert and recording rules of one deployment, selecting your series
with your selector (e.g. --deployment textfile --selector 'job="node",env="prod"'), are
written into DIR; with --dashboards, the two dashboards, whose queries select the
selector's other matchers beside their $job variable (its default: the selector's job).
--cluster-label NAME keeps the label NAME through the recording rules, names it in every
alert's description and gives the dashboards a variable of it that every query selects;
--runbook-url-base points the alerts' runbook_url and the dashboards' fault links at your
copy of docs/runbooks/.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from amp_exporter.monitoring import alertmanager, alerts, dashboards, rule_tests, runbooks, yamlio
from amp_exporter.monitoring.config import DEFAULT, DEPLOYMENTS, TEXTFILE, Config

REPO = Path(__file__).resolve().parents[2]
# Directories whose every file of these kinds must be generated (a left-over is stale).
OWNED = {runbooks.RUNBOOK_DIR: "*.md", rule_tests.TEST_DIR: "*.yaml",
         f"{alerts.TEXTFILE_DIR}/tests": "*.yaml"}


def outputs(config: Config = DEFAULT) -> dict[str, str]:
    """{path relative to the repository: content} of every generated file."""
    files = {}
    for shape in (config, TEXTFILE):  # the rules of both deployment shapes
        rules, recording = alerts.rule_files(shape)
        files[rules] = yamlio.dump({"groups": alerts.alert_groups(shape)})
        files[recording] = yamlio.dump({"groups": alerts.recording_groups(shape)})
    files |= {
        alertmanager.ALERTMANAGER_FILE: yamlio.dump(alertmanager.alertmanager_config(),
                                                    alertmanager.HEADER),
    }
    for path, data in rule_tests.rule_tests(config).items():
        files[path] = yamlio.dump(data)
    for path, board in dashboards.dashboards(config).items():
        files[path] = json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    for path, data in dashboards.provisioning().items():
        files[path] = yamlio.dump(data)
    files.update(runbooks.runbooks(config))
    return files


def stale(root: Path, files: dict[str, str]) -> list[str]:
    out = [p for p, text in sorted(files.items())
           if not (root / p).is_file() or (root / p).read_text(encoding="utf-8") != text]
    for directory, pattern in OWNED.items():
        out += sorted(str(p.relative_to(root)) for p in (root / directory).glob(pattern)
                      if str(p.relative_to(root)) not in files)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amp_exporter.monitoring",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a generated file is stale")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    parser.add_argument("--rules", type=Path, metavar="DIR",
                        help="write only the rules of --deployment and --selector into DIR")
    parser.add_argument("--deployment", choices=DEPLOYMENTS, default="exporter",
                        help="exporter: Prometheus scrapes amp-exporter; textfile: "
                        "node_exporter serves its textfile (default exporter)")
    parser.add_argument("--selector", help="label matchers that select amp-exporter's series "
                        '(default job="amp-exporter", or job="node" for textfile)')
    parser.add_argument("--dashboards", type=Path, metavar="DIR",
                        help="write the dashboards of --selector (and --cluster-label) into DIR")
    parser.add_argument("--cluster-label", metavar="NAME",
                        help="a target label telling clusters apart (default none)")
    parser.add_argument("--runbook-url-base", metavar="URL",
                        help=f"where the runbook pages are (default {DEFAULT.runbook_url_base})")
    args = parser.parse_args(argv)
    if args.rules is None and args.dashboards is None:
        if args.selector or args.cluster_label or args.runbook_url_base:
            parser.error("--selector, --cluster-label and --runbook-url-base need --rules "
                         "or --dashboards DIR")
    else:
        base = DEFAULT if args.deployment == "exporter" else TEXTFILE
        try:
            config = replace(base, selector=args.selector or base.selector,
                             cluster_label=args.cluster_label,
                             runbook_url_base=args.runbook_url_base or base.runbook_url_base)
            alerts.check_selector(config.selector)
            job = dashboards.selector_extras(config.selector)[0]
        except ValueError as exc:
            parser.error(str(exc))
        config = replace(config, job=job or config.job)
        if args.rules is not None:
            args.rules.mkdir(parents=True, exist_ok=True)
            for path, groups in ((alerts.RULES_FILE, alerts.alert_groups(config)),
                                 (alerts.RECORDING_FILE, alerts.recording_groups(config))):
                target = args.rules / Path(path).name
                target.write_text(yamlio.dump({"groups": groups}), encoding="utf-8")
                print(f"wrote {target}")
        if args.dashboards is not None:
            args.dashboards.mkdir(parents=True, exist_ok=True)
            for path, board in dashboards.dashboards(config).items():
                target = args.dashboards / Path(path).name
                target.write_text(json.dumps(board, indent=2, sort_keys=True,
                                             ensure_ascii=False) + "\n", encoding="utf-8")
                print(f"wrote {target}")
        return 0
    files = outputs()
    if args.check:
        bad = stale(args.root, files)
        for path in bad:
            print(f"stale: {path}", file=sys.stderr)
        if bad:
            print("run `python -m amp_exporter.monitoring` and commit the result",
                  file=sys.stderr)
        return 1 if bad else 0
    for path, text in files.items():
        target = args.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    for path in stale(args.root, files):  # left-overs: generated files no longer made
        (args.root / path).unlink()
        print(f"removed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
