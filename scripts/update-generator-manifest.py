#!/usr/bin/env python3
"""Write the generator's entry (file sizes and sha256 of models/emoji-*.safetensors) into
models/manifest.json and its copy web/src/models.js. Run after retraining."""
import hashlib, json, os, re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {
    "autoencoder": "emoji-autoencoder.safetensors",
    "denoiser": "emoji-denoiser.safetensors",
    "scorer": "emoji-scorer.safetensors",
    "soft_prompt": "emoji-soft-prompt.safetensors",
}
# The JS names of the files (camelCase, as the rest of pmg-web's API).
JS_KEYS = {"soft_prompt": "softPrompt"}


def entry(name):
    data = open(os.path.join(os.environ.get("PMG_MODELS_DIR", os.path.join(ROOT, "models")), name), "rb").read()
    return {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# Bump the id whenever the weights change (it names the model set in pages and notes).
gen = {"id": "emoji-v4", "license": "Apache-2.0", "card": "EMOJI-MODELS.md"}
gen.update({k: entry(f) for k, f in FILES.items()})
mpath = os.path.join(ROOT, "models/manifest.json")
manifest = json.load(open(mpath))
manifest["generator"] = gen
json.dump(manifest, open(mpath, "w"), indent=2)
open(mpath, "a").write("\n")

jpath = os.path.join(ROOT, "web/src/models.js")
js = open(jpath).read()
js = re.sub(r"\n// The image generator.*", "", js, flags=re.S)
files = ",\n".join(f"    {JS_KEYS.get(k, k)}: {{ file: '{gen[k]['file']}', bytes: {gen[k]['bytes']}, sha256: '{gen[k]['sha256']}' }}" for k in FILES)
js += f"""
// The image generator and scorer trained by this project (models/{gen['card']}); the weights ship in
// this package under models/ (copied there by scripts/build-web.sh).
export const generator = {{
  id: '{gen['id']}',
  license: '{gen['license']}',
  card: '{gen['card']}',
  files: {{
{files},
  }},
}};
"""
open(jpath, "w").write(js)
print("updated", mpath, "and", jpath)
