#!/usr/bin/env bash
# Fill .device/ for a prepared GPU call (docs/gpu.md): ../shared/device/prepare.sh (the search libraries the GPU
# machine lacks, the CIFAR-10 archive, setup.sh), plus the pure-Python packages it does not carry, copied from this
# checkout's .venv: optunity (optunity-pso) and the self-tuning contenders' optimizers. Then it says how much would
# travel: the checkout's tracked and untracked files and .device must stay under 64 MiB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/device/prepare.sh "$@"
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
tmp=$(mktemp -d)
tar xJf .device/site.tar.xz -C "$tmp"
for pkg in optunity schedulefree prodigyopt dadaptation dog mechanic_pytorch; do
  cp -r "$site/$pkg" "$tmp/site/"
done
find "$tmp/site" -name '__pycache__' -prune -exec rm -rf {} +
tar cJf .device/site.tar.xz -C "$tmp" site
rm -rf "$tmp"
tree_mib=$(( ( $(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) \
  + $(du -sb .device | cut -f1) ) / 1048576 ))
echo "would travel: about ${tree_mib} MiB (checkout + .device); the limit is 64 MiB"
[ "$tree_mib" -lt 64 ] || echo "too much: move committed results folders other than results/tables and results/calibration out of the checkout for the call (docs/gpu.md)"
