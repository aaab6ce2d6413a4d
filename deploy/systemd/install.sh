#!/bin/sh
# Install amp-exporter as a systemd service on Debian/Ubuntu (as root), from a checkout:
#
#   deploy/systemd/install.sh            # the service on :9872
#   deploy/systemd/install.sh --textfile # the node_exporter textfile timer instead
#   deploy/systemd/install.sh --textfile DIR   # ... writing into DIR
#
# What it does, so it can be done by hand or by configuration management instead:
#   1. apt-get install python3-venv python3-bpfcc (bcc is Debian's, not PyPI's)
#   2. a system user amp-exporter (no home, no shell)
#   3. a virtualenv /opt/amp-exporter with --system-site-packages (to see bcc), the
#      package installed in it; /opt/amp-exporter/bin/amp-exporter is what units run
#   4. /etc/amp-exporter/ (root:amp-exporter 0750) for web.yml and TLS files
#   5. the units into /etc/systemd/system, then enable --now
#   6. textfile: the directory node_exporter reads (deploy/systemd/textfile-dir says how it
#      is found); when it is not the unit's own (Debian's /var/lib/prometheus/node-exporter),
#      a drop-in amp-exporter-textfile.service.d/directory.conf points ExecStart and
#      ReadWritePaths there
set -eu
cd "$(dirname "$0")/../.."
mode=service
dir=""
if [ "${1:-}" = "--textfile" ]; then
    mode=textfile
    dir="${2:-}"
fi
UNIT_DIR=/var/lib/prometheus/node-exporter  # where amp-exporter-textfile.service writes
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
    told=yes
    if [ -z "$dir" ]; then
        dir=$(deploy/systemd/textfile-dir) || told=no
    fi
    install -d -m 0755 "$dir"
    # The one place the textfile unit may write (ReadWritePaths): let the user in.
    chgrp amp-exporter "$dir"
    chmod g+w "$dir"
    dropin=/etc/systemd/system/amp-exporter-textfile.service.d
    if [ "$dir" != "$UNIT_DIR" ]; then
        install -d -m 0755 "$dropin"
        {
            echo "# Written by deploy/systemd/install.sh: the directory node_exporter reads."
            echo "[Service]"
            echo "ExecStart="
            echo "ExecStart=/opt/amp-exporter/bin/amp-exporter textfile --output=$dir/amp-exporter.prom \$AMP_EXPORTER_ARGS"
            echo "ReadWritePaths="
            echo "ReadWritePaths=$dir"
        } > "$dropin/directory.conf"
    else
        rm -f "$dropin/directory.conf"
    fi
    systemctl daemon-reload
    systemctl enable --now amp-exporter-textfile.timer
    echo "installed: amp-exporter-textfile.timer -> $dir/amp-exporter.prom"
    if [ "$told" = no ]; then
        echo "install.sh: node_exporter reads no textfile directory yet: start it with" \
             "--collector.textfile.directory=$dir" >&2
    fi
else
    systemctl enable --now amp-exporter.service
    echo "installed: amp-exporter.service on :9872; flags in /etc/default/amp-exporter" \
         "(AMP_EXPORTER_ARGS=...), then systemctl restart amp-exporter"
fi
