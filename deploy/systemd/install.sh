#!/bin/sh
# Install amp-exporter as a systemd service on Debian/Ubuntu (as root), from a checkout:
#
#   deploy/systemd/install.sh            # the service on :9872
#   deploy/systemd/install.sh --textfile # the node_exporter textfile timer instead
#
# What it does, so it can be done by hand or by configuration management instead:
#   1. apt-get install python3-venv python3-bpfcc (bcc is Debian's, not PyPI's)
#   2. a system user amp-exporter (no home, no shell)
#   3. a virtualenv /opt/amp-exporter with --system-site-packages (to see bcc), the
#      package installed in it; /opt/amp-exporter/bin/amp-exporter is what units run
#   4. /etc/amp-exporter/ (root:amp-exporter 0750) for web.yml and TLS files
#   5. the units into /etc/systemd/system, then enable --now
set -eu
cd "$(dirname "$0")/../.."
mode=service
[ "${1:-}" = "--textfile" ] && mode=textfile
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends python3-venv python3-bpfcc >/dev/null

getent group amp-exporter >/dev/null || groupadd --system amp-exporter
getent passwd amp-exporter >/dev/null || useradd --system --gid amp-exporter \
    --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin amp-exporter

[ -x /opt/amp-exporter/bin/python ] || python3 -m venv --system-site-packages /opt/amp-exporter
/opt/amp-exporter/bin/python -m pip install -q --disable-pip-version-check .
/opt/amp-exporter/bin/amp-exporter --version

install -d -o root -g amp-exporter -m 0750 /etc/amp-exporter
install -m 0644 deploy/systemd/amp-exporter.service deploy/systemd/amp-exporter-textfile.service \
    deploy/systemd/amp-exporter-textfile.timer /etc/systemd/system/
systemctl daemon-reload

if [ "$mode" = textfile ]; then
    install -d -m 0755 /var/lib/node_exporter/textfile
    # The one place the textfile unit may write (ReadWritePaths): let the user in.
    chgrp amp-exporter /var/lib/node_exporter/textfile
    chmod 0775 /var/lib/node_exporter/textfile
    systemctl enable --now amp-exporter-textfile.timer
    echo "installed: amp-exporter-textfile.timer -> /var/lib/node_exporter/textfile/amp-exporter.prom"
else
    systemctl enable --now amp-exporter.service
    echo "installed: amp-exporter.service on :9872; flags in /etc/default/amp-exporter" \
         "(AMP_EXPORTER_ARGS=...), then systemctl restart amp-exporter"
fi
