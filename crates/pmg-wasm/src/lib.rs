//! The wasm-bindgen surface: adapts the Rust API for JavaScript, no logic of its own.
//! (The TypeScript wrapper in `web/` runs this in a Web Worker.) It builds only for wasm32; natively
//! this crate is empty.
#![cfg(target_family = "wasm")]

use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use pmg::bytes::ByteSource;
use pmg::device::{BackendKind, DeviceChoice, PmgDevice};
use pmg::error::Error;
use pmg::llm::{GenerateOptions, LanguageModel};
use pmg::tokenizer::ChatMessage;

mod selftest;

unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs once when the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    // cubecl registers thousands of items with static constructors. If nothing calls
    // `__wasm_call_ctors`, wasm-ld wraps every export in a shim that re-runs them on each
    // JS -> wasm call (0.5 ms per call); calling it once here removes the shims (PLATFORM.md).
    unsafe { __wasm_call_ctors() };
}

/// A Rust error as a JS `Error` whose `name` tells the kind (`GgufError`, `DeviceError`, ...).
fn js_error(e: Error) -> JsValue {
    let name = match &e {
        Error::Gguf(_) => "GgufError",
        Error::Metadata { .. } | Error::Tensor { .. } => "ModelError",
        Error::Tokenizer(_) | Error::Template(_) => "TokenizerError",
        Error::Device { .. } => "DeviceError",
        Error::Integrity { .. } => "IntegrityError",
        Error::InvalidArgument(_) => "InvalidArgumentError",
        Error::Cancelled => "AbortError",
        Error::History(_) => "HistoryError",
        Error::Preferences(_) => "PreferencesError",
        Error::Io { .. } => "IoError",
        Error::Weights { .. } => "ModelError",
        Error::Image(_) => "ImageError",
    };
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(name);
    err.into()
}

/// Plain JS objects (not `Map`s) for JSON-like values.
fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(bad_arg)
}

fn bad_arg(msg: impl std::fmt::Display) -> JsValue {
    js_error(Error::InvalidArgument(msg.to_string()))
}

async fn webgpu() -> Result<PmgDevice, Error> {
    let unavailable = |reason: String| Error::Device { device: "webgpu".into(), reason };
    let browser = browser_adapter().await;
    let (device, setup) =
        pmg::device::wgpu_options().init_with_setup_async().await.map_err(|e| unavailable(e.to_string()))?;
    let info = setup.adapter.get_info();
    let text = format!("{} {} {:?} {}", info.name, info.driver, info.device_type, browser.description).to_lowercase();
    let is_software = browser.is_fallback
        || info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu
        || text.contains("swiftshader")
        || text.contains("llvmpipe");
    let name = if info.name.is_empty() { browser.description } else { info.name };
    Ok(PmgDevice::from_wgpu(device, format!("{name} (WebGPU)"), is_software, &setup.device.limits()))
}

/// What the browser itself says of its default adapter; wgpu's adapter info is mostly empty there.
#[derive(Default)]
struct BrowserAdapter {
    is_fallback: bool,
    description: String,
}

async fn browser_adapter() -> BrowserAdapter {
    use js_sys::{Function, Promise, Reflect};
    let get = |o: &JsValue, k: &str| {
        Reflect::get(o, &JsValue::from_str(k)).ok().filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(gpu) = get(&js_sys::global(), "navigator").and_then(|n| get(&n, "gpu")) else {
        return BrowserAdapter::default();
    };
    let Some(request) = get(&gpu, "requestAdapter").and_then(|f| f.dyn_into::<Function>().ok()) else {
        return BrowserAdapter::default();
    };
    let Some(promise) = request.call0(&gpu).ok().and_then(|p| p.dyn_into::<Promise>().ok()) else {
        return BrowserAdapter::default();
    };
    let Some(adapter) =
        wasm_bindgen_futures::JsFuture::from(promise).await.ok().filter(|a| !a.is_null() && !a.is_undefined())
    else {
        return BrowserAdapter::default();
    };
    let info = get(&adapter, "info");
    // `GPUAdapterInfo.isFallbackAdapter` (current), `GPUAdapter.isFallbackAdapter` (older).
    let is_fallback = [info.clone(), Some(adapter)]
        .into_iter()
        .flatten()
        .find_map(|o| get(&o, "isFallbackAdapter")?.as_bool())
        .unwrap_or(false);
    let field = |k: &str| info.as_ref().and_then(|i| get(i, k)).and_then(|v| v.as_string()).unwrap_or_default();
    let description = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    BrowserAdapter { is_fallback, description }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsResult {
    tokens: Vec<u32>,
    text: String,
    finish_reason: Option<pmg::llm::FinishReason>,
}

/// A loaded language model.
#[wasm_bindgen]
pub struct Llm {
    lm: LanguageModel,
    n_ctx: usize,
    /// The image generator, once `loadGenerator` ran; it shares the LLM's device and reads the
    /// LLM's hidden states as its text conditioning.
    generator: std::cell::RefCell<Option<std::rc::Rc<pmg::diffusion::Generator>>>,
    /// The image-text scorer, once `loadScorer` ran (PMG's candidate selection).
    scorer: std::cell::RefCell<Option<std::rc::Rc<pmg::scorer::Scorer>>>,
    soft_prompt: std::cell::RefCell<Option<std::rc::Rc<pmg::soft_prompt::SoftPrompt>>>,
    /// A Stable Diffusion checkpoint (`loadSd`): when loaded, images and PMG's candidates come from it.
    sd: std::cell::RefCell<Option<std::rc::Rc<pmg::sd::pipeline::StableDiffusion>>>,
    /// A CLIP (`loadClip`): when loaded, it scores PMG's candidates.
    clip: std::cell::RefCell<Option<std::rc::Rc<pmg::sd::clip_scorer::ClipScorer>>>,
}

/// A folder's files from JS: `{ "unet/config.json": Uint8Array, ... }`; a missing or `null` entry
/// is a file the folder lacks. Files stay in JS memory: weights are copied in a tensor at a time.
fn folder_reader(files: &JsValue) -> impl FnMut(&str) -> pmg::Result<Option<Box<dyn ByteSource>>> + '_ {
    move |path: &str| {
        let v = js_sys::Reflect::get(files, &path.into()).unwrap_or(JsValue::UNDEFINED);
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        match v.dyn_into::<js_sys::Uint8Array>() {
            Ok(a) => Ok(Some(Box::new(JsBytes(a)))),
            Err(_) => Err(Error::InvalidArgument(format!("`{path}` must be a Uint8Array"))),
        }
    }
}

/// A file's bytes in a JS `Uint8Array` (at most 4 GiB: its length is a u32).
struct JsBytes(js_sys::Uint8Array);

impl ByteSource for JsBytes {
    fn len(&self) -> usize {
        self.0.length() as usize
    }

    fn read_at(&self, start: usize, out: &mut [u8]) {
        self.0.subarray(start as u32, (start + out.len()) as u32).copy_to(out);
    }
}

/// Options from JS into their one Rust definition: `undefined` or `null` (the whole object or a
/// field) are the defaults; an unknown or mistyped field is an `InvalidArgumentError` (the known
/// names are those the defaults serialize with, so flattened groups count too).
fn js_options<T: serde::de::DeserializeOwned + serde::Serialize + Default>(options: JsValue) -> Result<T, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(T::default());
    }
    let Some(obj) = options.dyn_ref::<js_sys::Object>() else {
        return Err(bad_arg("options must be an object"));
    };
    let known = match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => Default::default(),
    };
    let given = js_sys::Object::new();
    for entry in js_sys::Object::entries(obj).iter() {
        let entry: js_sys::Array = entry.unchecked_into();
        let (key, value) = (entry.get(0), entry.get(1));
        if value.is_undefined() || value.is_null() {
            continue;
        }
        let name = key.as_string().unwrap_or_default();
        if !known.contains_key(&name) {
            let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(bad_arg(format!("unknown option `{name}` (known: {})", names.join(", "))));
        }
        js_sys::Reflect::set(&given, &key, &value)?;
    }
    serde_wasm_bindgen::from_value(given.into()).map_err(bad_arg)
}

/// Progress of `personalize` to a JS callback; `false` (or a promise of it, or a throw) cancels.
struct JsHost(Option<js_sys::Function>);

impl pmg::host::Host<pmg::personalize::Stage> for JsHost {
    fn blocking(&self) -> bool {
        false
    }
    fn progress(&mut self, stage: pmg::personalize::Stage) -> impl std::future::Future<Output = bool> {
        let f = self.0.clone();
        async move {
            let Some(f) = f else { return true };
            let Ok(arg) = to_js(&stage) else { return false };
            let Ok(keep) = f.call1(&JsValue::NULL, &arg) else { return false };
            js_keep_going(keep).await
        }
    }
}

/// `generateImage`'s `on_step(i, n)`: `false` (or a promise of it, or a throw) cancels.
struct JsSteps(Option<js_sys::Function>);

impl pmg::host::Host<pmg::diffusion::Step> for JsSteps {
    fn blocking(&self) -> bool {
        false
    }
    fn progress(&mut self, s: pmg::diffusion::Step) -> impl std::future::Future<Output = bool> {
        let f = self.0.clone();
        async move {
            let Some(f) = f else { return true };
            let Ok(keep) = f.call2(&JsValue::NULL, &JsValue::from(s.done as u32), &JsValue::from(s.total as u32))
            else {
                return false;
            };
            js_keep_going(keep).await
        }
    }
}

/// A JS callback's answer: anything but `false` (or a promise resolving to it) continues; a
/// rejected promise stops.
async fn js_keep_going(mut keep: JsValue) -> bool {
    if let Some(p) = keep.dyn_ref::<js_sys::Promise>() {
        match wasm_bindgen_futures::JsFuture::from(p.clone()).await {
            Ok(v) => keep = v,
            Err(_) => return false,
        }
    }
    keep != JsValue::FALSE
}

/// `generateImage`'s answer.
fn image_result(
    images: &[pmg::image::Image],
    o: &pmg::diffusion::ImageOptions,
    references: &[serde_json::Value],
) -> Result<JsValue, JsValue> {
    let list = js_sys::Array::new();
    for img in images {
        list.push(&image_to_js(img)?);
    }
    let out = js_sys::Object::new();
    js_sys::Reflect::set(&out, &"images".into(), &list)?;
    js_sys::Reflect::set(&out, &"seed".into(), &JsValue::from(o.seed as f64))?;
    js_sys::Reflect::set(&out, &"steps".into(), &JsValue::from(o.sample.steps as u32))?;
    js_sys::Reflect::set(&out, &"guidance".into(), &JsValue::from(o.sample.guidance))?;
    js_sys::Reflect::set(&out, &"strength".into(), &JsValue::from(o.sample.strength))?;
    js_sys::Reflect::set(&out, &"references".into(), &to_js(&references)?)?;
    Ok(out.into())
}

fn image_to_js(img: &pmg::image::Image) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"width".into(), &JsValue::from(img.width as u32))?;
    js_sys::Reflect::set(&o, &"height".into(), &JsValue::from(img.height as u32))?;
    js_sys::Reflect::set(&o, &"rgba".into(), &js_sys::Uint8Array::from(img.rgba.as_slice()))?;
    Ok(o.into())
}

#[wasm_bindgen]
impl Llm {
    /// Build the model from GGUF bytes on `device` (`"auto" | "webgpu" | "cpu"`).
    pub async fn load(bytes: Vec<u8>, device: String, n_ctx: Option<u32>) -> Result<Llm, JsValue> {
        let choice: DeviceChoice = device.parse().map_err(js_error)?;
        let dev = PmgDevice::choose(choice, webgpu).await.map_err(js_error)?;
        let n_ctx = n_ctx.unwrap_or(2048) as usize;
        let lm = LanguageModel::from_gguf_bytes(&bytes, &dev, n_ctx).map_err(js_error)?;
        drop(bytes); // the GGUF copy is not needed once the weights are on the device
        // Compile every WebGPU pipeline now rather than on the first token (a no-op on the CPU).
        lm.warm_up_async().await.map_err(js_error)?;
        let n_ctx = n_ctx.clamp(1, lm.model.config.n_ctx_train);
        Ok(Llm {
            lm,
            n_ctx,
            generator: Default::default(),
            scorer: Default::default(),
            soft_prompt: Default::default(),
            sd: Default::default(),
            clip: Default::default(),
        })
    }

    /// The paths in a diffusers SD folder `loadSd` reads (some optional: see `pmg::sd::pipeline::FILES`),
    /// those read beside a GGUF checkpoint (`GGUF_FILES`), and those of an autoencoder folder that
    /// may replace its `vae/` (TAESD).
    #[wasm_bindgen(js_name = sdFiles)]
    pub fn sd_files() -> Result<JsValue, JsValue> {
        to_js(&serde_json::json!({
            "model": pmg::sd::pipeline::FILES,
            "gguf": pmg::sd::pipeline::GGUF_FILES,
            "vae": pmg::sd::pipeline::VAE_FILES,
        }))
    }

    /// The paths in a CLIP folder `loadClip` reads.
    #[wasm_bindgen(js_name = clipFiles)]
    pub fn clip_files() -> Result<JsValue, JsValue> {
        to_js(&pmg::sd::clip_scorer::FILES)
    }

    /// Load a Stable Diffusion checkpoint from its folder's files (`files`: path -> bytes, on the
    /// LLM's device); `vae`: an autoencoder folder's files decoding in place of `vae/`. Once loaded,
    /// `generateImage` and `personalize` draw with it. `quantize` (`'f32'`, `'q8_0'`, `'q4_0'`;
    /// default f32): how the UNet's and text encoder's linear layers are held. Returns `{ size,
    /// contextWidth, weightBytes }` (the UNet's and text encoder's weights as held). Options:
    /// `quantize`; `gguf`: the path in `files` of a one-file GGUF checkpoint as stable-diffusion.cpp
    /// converts them, read with the tokenizer beside it
    /// (`pmg::sd::pipeline::StableDiffusion::from_gguf`); `size`: the image side drawn.
    #[wasm_bindgen(js_name = loadSd)]
    pub fn load_sd(&self, files: JsValue, vae: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct SdOptions {
            quantize: Option<serde_json::Value>,
            gguf: Option<String>,
            size: Option<usize>,
        }
        let o: SdOptions = if options.is_undefined() || options.is_null() {
            SdOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| bad_arg(format!("generator: {e}")))?
        };
        let precision: pmg::sd::Precision = match o.quantize {
            None => Default::default(),
            Some(q) => serde_json::from_value(q).map_err(|e| bad_arg(format!("generator.quantize: {e}")))?,
        };
        let mut vae_reader = (!vae.is_undefined() && !vae.is_null()).then(|| folder_reader(&vae));
        let vae = vae_reader.as_mut().map(|r| r as &mut pmg::sd::folder::ReadFile<'_>);
        let device = &self.lm.model.device;
        use pmg::sd::pipeline::StableDiffusion;
        let mut sd = match &o.gguf {
            Some(name) => StableDiffusion::from_gguf(&mut folder_reader(&files), name, vae, device, precision),
            None => StableDiffusion::from_files(&mut folder_reader(&files), vae, device, precision),
        }
        .map_err(js_error)?;
        if let Some(px) = o.size {
            sd.set_size(px).map_err(js_error)?;
        }
        let info = serde_json::json!({
            "size": sd.native_size(),
            "contextWidth": sd.unet.config.context_width(),
            "weightBytes": sd.unet.weight_bytes + sd.text_encoder.weight_bytes,
        });
        *self.sd.borrow_mut() = Some(std::rc::Rc::new(sd));
        to_js(&info)
    }

    /// Load a CLIP (transformers `CLIPModel` folder files, path -> bytes) as PMG's scorer.
    /// Returns `{ embedding }`.
    #[wasm_bindgen(js_name = loadClip)]
    pub fn load_clip(&self, files: JsValue) -> Result<JsValue, JsValue> {
        let c = pmg::sd::clip_scorer::ClipScorer::from_files(&mut folder_reader(&files), &self.lm.model.device)
            .map_err(js_error)?;
        let info = serde_json::json!({ "embedding": c.model.config.projection_dim });
        *self.clip.borrow_mut() = Some(std::rc::Rc::new(c));
        to_js(&info)
    }

    /// `{ backend, adapter, softwareAdapter, config, nCtx, memory: { weightBytes, kvCacheBytes, wasmHeapBytes } }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let d = &self.lm.model.device;
        let c = &self.lm.model.config;
        // One session's K and V caches, f32 (they live on the GPU on webgpu, in the wasm heap on cpu).
        let kv_cache_bytes = 2 * c.n_layer * c.n_head_kv * self.n_ctx * c.head_dim * 4;
        let heap = wasm_bindgen::memory()
            .unchecked_into::<js_sys::WebAssembly::Memory>()
            .buffer()
            .unchecked_into::<js_sys::ArrayBuffer>()
            .byte_length();
        let v = serde_json::json!({
            "backend": match d.kind { BackendKind::Cpu => "cpu", BackendKind::Wgpu => "webgpu" },
            "adapter": d.adapter,
            "softwareAdapter": d.is_software,
            "config": c,
            "nCtx": self.n_ctx,
            "memory": {
                "weightBytes": self.lm.model.weight_bytes,
                "kvCacheBytes": kv_cache_bytes,
                "wasmHeapBytes": heap,
            },
        });
        to_js(&v)
    }

    /// Complete a raw prompt. `on_token(text, id)` is called for every token; returning `false`
    /// from it (or a promise of `false`) stops generation (finish reason `cancelled`). A returned
    /// promise is awaited before the next token, which lets a worker handle messages in between.
    pub async fn complete(
        &self,
        prompt: String,
        options: JsValue,
        on_token: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let ids = self.lm.tokenize_prompt(&prompt).map_err(js_error)?;
        self.run(ids, options, on_token).await
    }

    /// Chat: `messages` is `[{ role, content }]`; the model's chat template is applied.
    pub async fn chat(
        &self,
        messages: JsValue,
        options: JsValue,
        on_token: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let messages: Vec<ChatMessage> = serde_wasm_bindgen::from_value(messages).map_err(bad_arg)?;
        let ids = self.lm.tokenize_chat(&messages).map_err(js_error)?;
        self.run(ids, options, on_token).await
    }

    /// Preference keywords from a history (`events_json`: an export or an array of events, as JSON).
    /// Invalid events are skipped (pmg-web's history module validates them on the way in).
    pub async fn preferences(&self, events_json: String, options: JsValue) -> Result<JsValue, JsValue> {
        let (events, _) = pmg::history::parse_export(&events_json).map_err(js_error)?;
        let opts: pmg::preference::ExtractOptions = js_options(options)?;
        let ex = pmg::preference::Extractor::new(&self.lm).map_err(js_error)?;
        let mut feed = pmg::preference::Feed::awaited(self.lm.new_session());
        let prefs = ex.preferences(&mut feed, &events, &opts).await.map_err(js_error)?;
        to_js(&prefs)
    }

    /// Keywords describing one item (`item_json`: `{ id, title, category?, tags?, description? }`).
    #[wasm_bindgen(js_name = itemKeywords)]
    pub async fn item_keywords(&self, item_json: String, n: u32, options: JsValue) -> Result<JsValue, JsValue> {
        let item: pmg::history::Item = serde_json::from_str(&item_json).map_err(bad_arg)?;
        let opts: pmg::preference::ExtractOptions = js_options(options)?;
        let ex = pmg::preference::Extractor::new(&self.lm).map_err(js_error)?;
        let mut feed = pmg::preference::Feed::awaited(self.lm.new_session());
        let kws = ex.item_keywords(&mut feed, &item, n as usize, &opts).await.map_err(js_error)?;
        to_js(&kws)
    }

    /// Load the image generator from its autoencoder and denoiser safetensors files (on the LLM's
    /// device). Returns `{ parameters, latentScale }`.
    #[wasm_bindgen(js_name = loadGenerator)]
    pub fn load_generator(&self, autoencoder: &[u8], denoiser: &[u8]) -> Result<JsValue, JsValue> {
        let g =
            pmg::diffusion::Generator::from_bytes(autoencoder, denoiser, &self.lm.model.device).map_err(js_error)?;
        let info = serde_json::json!({ "parameters": g.num_params(), "latentScale": g.latent_scale });
        *self.generator.borrow_mut() = Some(std::rc::Rc::new(g));
        to_js(&info)
    }

    /// Generate `n` images (seeds `seed`, `seed + 1`, ...) for `prompt`. `on_step(i, n)` runs after
    /// each denoising step; returning `false` (or a promise of it, or throwing) cancels with an `AbortError`.
    /// Returns `{ images: [{ width, height, rgba: Uint8Array }], seed, steps, guidance, strength,
    /// references: [{ name, similarity }] }` (the training emoji nearest to the prompt; with
    /// `strength < 1` the run starts from the first).
    #[wasm_bindgen(js_name = generateImage)]
    pub async fn generate_image(
        &self,
        prompt: String,
        options: JsValue,
        on_step: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        use pmg::diffusion::{ImageOptions, MAX_TEXT_TOKENS, encode_text_async};
        let o: ImageOptions = js_options(options)?;
        o.validate().map_err(js_error)?;
        let sd = self.sd.borrow().clone();
        if let Some(sd) = sd {
            let cond = sd.encode_async(&prompt).await.map_err(js_error)?;
            let side = sd.native_size();
            let conds = vec![cond; o.n];
            let x = sd
                .denoise_from(&conds, None, &o.seeds(), &o.sample, [side, side], &mut JsSteps(on_step))
                .await
                .map_err(js_error)?;
            let data = pmg::device::read_f32_async(x).await.map_err(js_error)?;
            return image_result(&pmg::diffusion::batch_images(&data, [side, side]), &o, &[]);
        }
        let g = self.loaded_generator()?;
        let cond = encode_text_async(&self.lm, &prompt, MAX_TEXT_TOKENS).await.map_err(js_error)?;
        let references: Vec<serde_json::Value> = g
            .references(&cond)
            .into_iter()
            .map(|(name, s)| serde_json::json!({ "name": name, "similarity": s }))
            .collect();
        let n = o.n;
        let conds = vec![cond; n];
        let x = g.denoise(&conds, &o.seeds(), &o.sample, &mut JsSteps(on_step)).await.map_err(js_error)?;
        let data = pmg::device::read_f32_async(x).await.map_err(js_error)?;
        image_result(&pmg::diffusion::to_images(&data, n), &o, &references)
    }

    /// Load the image-text scorer from its safetensors file (on the LLM's device).
    #[wasm_bindgen(js_name = loadScorer)]
    pub fn load_scorer(&self, scorer: &[u8]) -> Result<JsValue, JsValue> {
        let s = pmg::scorer::Scorer::from_bytes(scorer, &self.lm.model.device).map_err(js_error)?;
        let info = serde_json::json!({ "embedding": s.config.d_embed });
        *self.scorer.borrow_mut() = Some(std::rc::Rc::new(s));
        to_js(&info)
    }

    /// Load the implicit-preference soft prompt from its safetensors file (on the LLM's device).
    /// Returns `{ tokens }`.
    #[wasm_bindgen(js_name = loadSoftPrompt)]
    pub fn load_soft_prompt(&self, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let s = pmg::soft_prompt::SoftPrompt::from_bytes(bytes, &self.lm.model.device).map_err(js_error)?;
        let info = serde_json::json!({ "tokens": s.config.tokens });
        *self.soft_prompt.borrow_mut() = Some(std::rc::Rc::new(s));
        to_js(&info)
    }

    /// PMG end to end on a history (`events_json`: an export or an array of events; invalid ones
    /// are skipped, feedback events set the alpha when `options.alpha` is absent). `on_progress(stage)`
    /// gets `{ stage: 'extract' | 'encode' | 'denoise' | 'score', step?, steps? }`; returning `false`
    /// (or a promise of it) cancels with an `AbortError`. Returns the result of
    /// `pmg::personalize::Personalized` with `image: { width, height, rgba }` on every candidate.
    /// `target_png`: the target item's own picture (PNG bytes); candidates then start from it.
    pub async fn personalize(
        &self,
        events_json: String,
        target: String,
        target_png: Option<Vec<u8>>,
        options: JsValue,
        on_progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let opts: pmg::personalize::PersonalizeOptions = js_options(options)?;
        let (events, _) = pmg::history::parse_export(&events_json).map_err(js_error)?;
        let sd = self.sd.borrow().clone();
        let emoji = if sd.is_none() { Some(self.loaded_generator()?) } else { None };
        let clip = self.clip.borrow().clone();
        let shipped = if clip.is_none() {
            Some(self.scorer.borrow().clone().ok_or_else(|| {
                js_error(Error::InvalidArgument("no scorer loaded (call loadScorer or loadClip first)".into()))
            })?)
        } else {
            None
        };
        let generator = match (&sd, &emoji) {
            (Some(sd), _) => (&**sd).into(),
            (None, Some(g)) => (&**g).into(),
            (None, None) => return Err(bad_arg("no generator loaded")),
        };
        let scorer = match (&clip, &shipped) {
            (Some(c), _) => (&**c).into(),
            (None, Some(s)) => (&**s).into(),
            (None, None) => return Err(bad_arg("no scorer loaded")),
        };
        let soft = self.soft_prompt.borrow().clone();
        let p = pmg::personalize::Personalizer { lm: &self.lm, generator, scorer, soft: soft.as_deref() };
        let image = target_png.map(|b| pmg::image::Image::decode_png(&b)).transpose().map_err(js_error)?;
        let target = pmg::personalize::Target { title: target, image };
        let r = p.run(&mut JsHost(on_progress), &events, &target, &opts).await.map_err(js_error)?;
        let out = to_js(&r)?;
        let cands: js_sys::Array = js_sys::Reflect::get(&out, &"candidates".into())?.unchecked_into();
        for (i, c) in r.candidates.iter().enumerate() {
            js_sys::Reflect::set(&cands.get(i as u32), &"image".into(), &image_to_js(&c.image)?)?;
        }
        Ok(out)
    }

    /// The default options of `personalize` (camelCase, as `pmg::personalize::PersonalizeOptions`).
    #[wasm_bindgen(js_name = personalizeDefaults)]
    pub fn personalize_defaults() -> Result<JsValue, JsValue> {
        to_js(&pmg::personalize::PersonalizeOptions::default())
    }

    /// The feedback event for a thumbs up/down on candidate `index` of a `personalize` result
    /// (`result_json`: the result without images), ready to be recorded in the history.
    #[wasm_bindgen(js_name = feedbackEvent)]
    pub fn feedback_event(result_json: String, index: u32, up: bool, at: f64) -> Result<JsValue, JsValue> {
        let r: pmg::personalize::Personalized =
            serde_json::from_str(&result_json).map_err(|e| bad_arg(format!("not a personalize result: {e}")))?;
        let e = pmg::history::Event::new(
            at as i64,
            pmg::history::EventKind::Feedback(r.feedback(index as usize, up).map_err(js_error)?),
        );
        e.validate(0).map_err(|e| js_error(e.into()))?;
        to_js(&e)
    }

    /// The alpha and weight bonuses learned from the feedback in a history (`events_json`).
    pub fn profile(events_json: String) -> Result<JsValue, JsValue> {
        let (events, _) = pmg::history::parse_export(&events_json).map_err(js_error)?;
        // Through serde_json: the weight-bonus map's integer keys become strings, as JS objects need.
        to_js(&serde_json::to_value(pmg::personalize::Profile::from_history(&events)).map_err(bad_arg)?)
    }

    /// Token ids of `text` (special-token text recognised).
    pub fn tokenize(&self, text: String) -> Result<Vec<u32>, JsValue> {
        self.lm.tokenize_prompt(&text).map_err(js_error)
    }
}

impl Llm {
    fn loaded_generator(&self) -> Result<std::rc::Rc<pmg::diffusion::Generator>, JsValue> {
        self.generator
            .borrow()
            .clone()
            .ok_or_else(|| js_error(Error::InvalidArgument("no generator loaded (call loadGenerator first)".into())))
    }

    async fn run(
        &self,
        prompt: Vec<u32>,
        options: JsValue,
        on_token: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let mut opts: GenerateOptions = js_options(options)?;
        let cancel = pmg::llm::CancelToken::new();
        opts.cancel = Some(cancel.clone());
        let mut session = self.lm.new_session();
        let mut stream = session.generate(&prompt, opts).map_err(js_error)?;
        let mut tokens = Vec::new();
        while let Some(tok) = stream.next_async().await {
            let tok = tok.map_err(js_error)?;
            tokens.push(tok.id);
            if let Some(f) = &on_token {
                let mut keep = f.call2(&JsValue::NULL, &JsValue::from_str(&tok.text), &JsValue::from(tok.id))?;
                if let Some(p) = keep.dyn_ref::<js_sys::Promise>() {
                    keep = wasm_bindgen_futures::JsFuture::from(p.clone()).await?;
                }
                if keep == JsValue::FALSE {
                    cancel.cancel();
                }
            }
        }
        let r = JsResult { tokens, text: stream.text().to_string(), finish_reason: stream.finish_reason() };
        to_js(&r)
    }
}

/// Hex SHA-256 of `bytes`: the model integrity check where WebCrypto is unavailable (insecure contexts).
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    pmg::models::sha256_hex(bytes)
}
