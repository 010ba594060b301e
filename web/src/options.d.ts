// Generated from the Rust option structs (crates/pmg/src/options_ts.rs); do not edit.
// Each struct's defaults (the Rust `Default`) follow it as JSON.

export type SamplerKind = "ddim" | "dpm-solver2m" | "euler" | "euler-ancestral" | "lcm";

export type Domain = "stickers" | "shop" | "movies";

export type PromptMode = "direct" | "per_attribute";

export type Weighting = "text" | "rows";

export type SamplingParams = { 
/**
 * 0 is greedy (the default).
 */
temperature: number, 
/**
 * Keep the k most likely tokens; 0 = off.
 */
topK: number, 
/**
 * Keep the most likely tokens up to this probability mass, in (0, 1]; 1 = off.
 */
topP: number, 
/**
 * 1 = off; above 1 discourages tokens seen in the last `repeatLastN`.
 */
repetitionPenalty: number, repeatLastN: number, 
/**
 * Seed of the sampler: the same seed and options give the same tokens.
 */
seed: number, };
// Defaults: {"temperature":0.0,"topK":40,"topP":0.95,"repetitionPenalty":1.0,"repeatLastN":64,"seed":0}

export type GenerateOptions = { 
/**
 * Tokens to generate at most.
 */
maxTokens: number, 
/**
 * Stop before any of these strings; they are not part of the output.
 */
stop: Array<string>, 
 } & SamplingParams;
// Defaults: {"maxTokens":256,"temperature":0.0,"topK":40,"topP":0.95,"repetitionPenalty":1.0,"repeatLastN":64,"seed":0,"stop":[]}

export type RenderOptions = { 
/**
 * Most recent distinct items to show.
 */
maxItems: number, 
/**
 * Most recent conversation turns to show.
 */
maxMessages: number, 
/**
 * Most recent searches to show.
 */
maxSearches: number, 
/**
 * Items rated below this (0..=1 of the scale) are left out: they are dislikes, not interests.
 */
minRating: number, 
/**
 * Upper bound on the rendering's length in tokens; the oldest lines go first.
 */
budgetTokens: number, };
// Defaults: {"maxItems":8,"maxMessages":6,"maxSearches":3,"minRating":0.6,"budgetTokens":400}

export type SampleOptions = { 
/**
 * Denoising steps, 1..=50.
 */
steps: number, 
/**
 * Classifier-free guidance scale, 0..=20 (1 turns guidance off).
 */
guidance: number, 
/**
 * ddim | dpm-solver2m (DPM-Solver++ 2M) | euler | euler-ancestral | lcm (the last three: SD models).
 */
sampler: SamplerKind, 
/**
 * Starting noise, in (0, 1]: below 1 the run starts from a picture (the target's own, or the
 * training emoji nearest to the prompt) noised that far, and the steps cover only that share of
 * the schedule (SDEdit, Meng et al. 2022); 1 starts from pure noise.
 */
strength: number, };
// Defaults: {"steps":20,"guidance":3.0,"sampler":"ddim","strength":0.6}

export type ImageOptions = { 
/**
 * Seed of the initial noise; image `i` uses `seed + i`. The same seed gives the same image.
 */
seed: number, 
/**
 * Images to generate, 1..=16.
 */
n: number, 
 } & SampleOptions;
// Defaults: {"seed":0,"n":1,"steps":20,"guidance":3.0,"sampler":"ddim","strength":0.6}

export type ExtractOptions = { 
/**
 * Keywords to extract, 1..=32.
 */
nKeywords: number, 
/**
 * Which of PMG's history renderings: stickers | shop | movies.
 */
domain: Domain, 
/**
 * direct | per_attribute (PMG's attribute-wise prompt).
 */
mode: PromptMode, render: RenderOptions, 
/**
 * Sampling temperature of the keywords; 0 is greedy (the default: the same history gives the
 * same keywords).
 */
temperature: number, 
/**
 * Seed of the keywords' sampling (with a temperature above 0).
 */
seed: number, 
/**
 * Words per keyword, 1..=6.
 */
maxWords: number, };
// Defaults: {"nKeywords":8,"domain":"stickers","mode":"direct","render":{"maxItems":8,"maxMessages":6,"maxSearches":3,"minRating":0.6,"budgetTokens":400},"temperature":0.0,"seed":0,"maxWords":3}

export type PersonalizeOptions = { 
/**
 * 0 = only accuracy to the target counts, 1 = only the preferences. Unset: the alpha learned
 * from the user's feedback (the profile's; `DEFAULT_ALPHA` before any).
 */
alpha: number | null, 
/**
 * Preference weights to try, each 0..=8; 0 is the unpersonalized target-only image.
 */
weights: Array<number>, 
/**
 * Seeds per weight (`seed`, `seed + 1`, ...), 1..=8; at most 16 candidates in all.
 */
seeds: number, 
/**
 * First seed of the noise.
 */
seed: number, 
/**
 * text: the keywords repeated w times in the prompt (the paper's way); rows: the keywords'
 * hidden states repeated w times.
 */
weighting: Weighting, 
/**
 * Preference keywords in the conditioning (the most confident first), 1..=8.
 */
preferenceKeywords: number, 
/**
 * Condition on the preference keywords (they are extracted either way: the choice scores
 * candidates against them).
 */
keywords: boolean, 
/**
 * Condition on the implicit preferences (soft-prompt rows, PMG's soft "image tokens"; needs
 * the soft-prompt weights).
 */
embeddings: boolean, 
/**
 * With a target picture: seed i of each weight starts from the picture at the i-th of these
 * strengths (cycling), each in (0, 1]; lower keeps more of the picture. (`strength` is for
 * targets without a picture.)
 */
imageStrengths: Array<number>, extract: ExtractOptions, 
 } & SampleOptions;
// Defaults: {"alpha":null,"weights":[0,1,2],"seeds":2,"seed":0,"weighting":"text","preferenceKeywords":3,"keywords":true,"embeddings":false,"imageStrengths":[0.5,0.7],"steps":20,"guidance":3.0,"sampler":"ddim","strength":0.6,"extract":{"nKeywords":8,"domain":"stickers","mode":"direct","render":{"maxItems":8,"maxMessages":6,"maxSearches":3,"minRating":0.6,"budgetTokens":400},"temperature":0.0,"seed":0,"maxWords":3}}
