// The pmg demo: a sticker shop and a chat record a behaviour history on this device; "Made for
// you" runs PMG (keywords from the LLM, the diffusion generator, the scorer's choice) here too.
// URL parameters: device=auto|webgpu|cpu, steps=N (denoising steps), models=URL (where the GGUF is).
import { Pmg } from '../src/index.js'; // from npm: import { Pmg } from 'pmg-web';

const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.search);
const STEPS = Math.min(50, Math.max(1, Number(params.get('steps')) || 20));

// [emoji, id (code point), name, category, tags]
const STICKERS = [
  ['🐱', '1f431', 'cat face', 'Animals & Nature', ['cat', 'kitten', 'pet']],
  ['😻', '1f63b', 'smiling cat with heart-eyes', 'Smileys & Emotion', ['cat', 'love']],
  ['🐶', '1f436', 'dog face', 'Animals & Nature', ['dog', 'puppy', 'pet']],
  ['🦊', '1f98a', 'fox', 'Animals & Nature', ['fox', 'forest']],
  ['☕', '2615', 'hot beverage', 'Food & Drink', ['coffee', 'tea', 'morning']],
  ['🍩', '1f369', 'doughnut', 'Food & Drink', ['donut', 'sweet', 'dessert']],
  ['🍓', '1f353', 'strawberry', 'Food & Drink', ['fruit', 'red', 'sweet']],
  ['🍕', '1f355', 'pizza', 'Food & Drink', ['cheese', 'food']],
  ['🌸', '1f338', 'cherry blossom', 'Animals & Nature', ['flower', 'pink', 'spring']],
  ['🌻', '1f33b', 'sunflower', 'Animals & Nature', ['flower', 'yellow', 'summer']],
  ['🌙', '1f319', 'crescent moon', 'Travel & Places', ['night', 'sky']],
  ['🚀', '1f680', 'rocket', 'Travel & Places', ['space', 'launch']],
  ['🪐', '1fa90', 'ringed planet', 'Travel & Places', ['space', 'saturn']],
  ['⭐', '2b50', 'star', 'Travel & Places', ['night', 'sky', 'yellow']],
  ['🎸', '1f3b8', 'guitar', 'Objects', ['music', 'rock']],
  ['🎧', '1f3a7', 'headphone', 'Objects', ['music', 'listen']],
  ['⚽', '26bd', 'soccer ball', 'Activities', ['football', 'sport']],
  ['🏀', '1f3c0', 'basketball', 'Activities', ['sport', 'orange']],
  ['💜', '1f49c', 'purple heart', 'Smileys & Emotion', ['purple', 'love']],
  ['🩷', '1fa77', 'pink heart', 'Smileys & Emotion', ['pink', 'pastel', 'love']],
  ['🌊', '1f30a', 'water wave', 'Travel & Places', ['ocean', 'sea', 'blue']],
  ['🐚', '1f41a', 'spiral shell', 'Animals & Nature', ['beach', 'sea']],
  ['🎃', '1f383', 'jack-o-lantern', 'Activities', ['halloween', 'orange']],
  ['❄️', '2744', 'snowflake', 'Travel & Places', ['winter', 'cold', 'blue']],
];
// What "made for you" makes: the target the generator draws.
const OCCASIONS = [
  ['birthday', 'birthday cake'],
  ['coffee break', 'teacup without handle'],
  ['good night', 'night with stars'],
  ['party', 'party popper'],
  ['love', 'sparkling heart'],
  ['thank you', 'person with folded hands'],
  ['cheers', 'clinking glasses'],
];

const state = { pmg: null, last: null, busy: false };

function setBar(bar, text, value, label) {
  $(bar).value = value;
  $(text).textContent = label;
}

async function refreshData() {
  if (!state.pmg) return;
  const events = await state.pmg.history.list();
  $('#count').textContent = events.length;
  const ol = $('#events');
  ol.replaceChildren(...events.slice().reverse().map((e) => {
    const li = document.createElement('li');
    const what = e.item?.title ?? e.query ?? e.text ?? (e.type === 'feedback' ? `${e.up ? 'liked' : 'disliked'} a "${e.target}" sticker` : '');
    li.textContent = `${new Date(e.at).toLocaleTimeString()} ${e.type}: ${what}`;
    return li;
  }));
  const profile = await state.pmg.profile();
  $('#learned-alpha').textContent = profile.alpha.toFixed(2);
  if ($('#learned').checked) $('#alpha').value = profile.alpha;
  const picked = new Set(events.filter((e) => e.item).map((e) => e.item.id));
  for (const b of document.querySelectorAll('.sticker')) b.classList.toggle('picked', picked.has(b.dataset.id));
}

function renderShop() {
  $('#stickers').replaceChildren(...STICKERS.map(([ch, id, title, category, tags]) => {
    const b = document.createElement('button');
    b.className = 'sticker';
    b.dataset.id = id;
    b.title = title;
    // The Noto Emoji picture (stickers/, Apache-2.0): emoji fonts differ between systems.
    const img = Object.assign(document.createElement('img'), { src: `stickers/${id}.png`, alt: ch, width: 40, height: 40 });
    b.append(img);
    const s = document.createElement('span');
    s.textContent = title;
    b.append(s);
    b.addEventListener('click', async () => {
      await state.pmg?.history.record({ type: 'click', item: { id, title, category, tags, image: id } });
      await refreshData();
    });
    return b;
  }));
  // An occasion is a title alone; a shop item comes with its own picture, which the candidates
  // start from so the item stays recognisable (personalize({ target: { title, image } })).
  const group = (label, options) => {
    const g = Object.assign(document.createElement('optgroup'), { label });
    g.append(...options);
    return g;
  };
  const option = (value, textContent) => Object.assign(document.createElement('option'), { value, textContent });
  $('#occasion').replaceChildren(
    group('An occasion', OCCASIONS.map(([label, target]) => option(target, label))),
    group('A shop item, made yours', STICKERS.map(([, id, title]) => option(`item:${id}`, title))),
  );
}

function say(who, text) {
  const p = document.createElement('p');
  p.textContent = `${who}: ${text}`;
  $('#transcript').append(p);
  $('#transcript').scrollTop = 1e9;
}

async function onChat(ev) {
  ev.preventDefault();
  const text = $('#chat-input').value.trim();
  if (!text || !state.pmg) return;
  $('#chat-input').value = '';
  say('You', text);
  await state.pmg.history.record({ type: 'message', role: 'user', text });
  await refreshData();
}

function candidateCard(r, c, i) {
  const div = document.createElement('div');
  div.className = `cand${i === r.chosen ? ' chosen' : ''}`;
  const canvas = document.createElement('canvas');
  canvas.width = c.image.width;
  canvas.height = c.image.height;
  canvas.getContext('2d').putImageData(c.image, 0, 0);
  const scores = document.createElement('div');
  scores.className = 'scores';
  const from = r.fromPicture ? ` · from the item's picture at ${c.strength.toFixed(2)}` : '';
  scores.textContent = `${i === r.chosen ? 'chosen · ' : ''}w=${c.weight}${from} · accuracy ${Math.exp(c.accuracy).toFixed(3)} · personal ${Math.exp(c.preference).toFixed(3)}`;
  const actions = document.createElement('div');
  actions.className = 'actions';
  for (const [label, up] of [['▲ like', true], ['▼ no', false]]) {
    const b = document.createElement('button');
    b.textContent = label;
    b.setAttribute('aria-label', up ? 'thumbs up' : 'thumbs down');
    b.addEventListener('click', async () => {
      await state.pmg.feedback(r, i, up);
      b.classList.add('voted');
      await refreshData();
    });
    actions.append(b);
  }
  const a = document.createElement('a');
  a.textContent = 'PNG';
  a.download = `${r.target.replace(/\W+/g, '-')}-${i}.png`;
  a.href = '#';
  // The file is encoded on the first click (4x, sharp pixels), then that click is replayed.
  a.addEventListener('click', async (ev) => {
    if (a.dataset.ready) return;
    ev.preventDefault();
    a.href = URL.createObjectURL(await c.image.toBlob({ scale: 4 }));
    a.dataset.ready = '1';
    a.click();
  });
  actions.append(a);
  div.append(canvas, scores, actions);
  return div;
}

const FILE_NAMES = { autoencoder: 'image decoder', denoiser: 'image', scorer: 'scoring', softPrompt: 'preference' };

async function onGenerate() {
  if (state.busy) return;
  state.busy = true;
  $('#generate').disabled = true;
  try {
    const alpha = $('#learned').checked ? undefined : Number($('#alpha').value);
    const choice = $('#occasion').value;
    const item = choice.startsWith('item:') ? STICKERS.find(([, id]) => `item:${id}` === choice) : null;
    const target = item
      ? { title: item[2], image: new Uint8Array(await (await fetch(`stickers/${item[1]}.png`)).arrayBuffer()) }
      : choice;
    const r = await state.pmg.personalize({
      target, alpha, steps: STEPS, embeddings: $('#implicit').checked,
      onProgress: (p) => {
        if (p.phase === 'denoise') setBar('#gen-bar', '#gen-text', p.step / p.total, `Drawing ${p.step}/${p.total}`);
        else if (p.phase === 'download') setBar('#gen-bar', '#gen-text', p.total ? p.loaded / p.total : 0, `Downloading the ${FILE_NAMES[p.file] ?? p.file ?? 'image'} model`);
        else setBar('#gen-bar', '#gen-text', 0, { extract: 'Reading your history…', encode: 'Preparing…', score: 'Choosing…', verify: 'Verifying…', cache: 'Caching…' }[p.phase] ?? p.phase);
      },
    });
    r.fromPicture = Boolean(item);
    state.last = r;
    setBar('#gen-bar', '#gen-text', 1, `Done in ${(r.ms / 1000).toFixed(1)} s (alpha ${r.alpha.toFixed(2)})`);
    $('#keywords').textContent = r.preferences.neutral
      ? 'No history yet: these are not personalized. Pick stickers or chat first.'
      : `What we think you like: ${r.preferences.keywords.map((k) => k.text).join(', ')}${r.usedEmbeddings ? ' (and what the model read between the lines: its implicit preferences)' : ''}`;
    $('#candidates').replaceChildren(...r.candidates.map((c, i) => candidateCard(r, c, i)));
  } catch (e) {
    setBar('#gen-bar', '#gen-text', 0, `Failed: ${e.name}: ${e.message}`);
  } finally {
    state.busy = false;
    $('#generate').disabled = false;
  }
}

async function main() {
  renderShop();
  $('#chat-form').addEventListener('submit', onChat);
  $('#generate').addEventListener('click', onGenerate);
  $('#learned').addEventListener('change', refreshData);
  $('#alpha').addEventListener('input', () => ($('#learned').checked = false));
  $('#export').addEventListener('click', async () => {
    const blob = new Blob([await state.pmg.history.export()], { type: 'application/json' });
    const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: 'pmg-history.json' });
    a.click();
  });
  $('#delete').addEventListener('click', async () => {
    await state.pmg.history.clear();
    $('#transcript').replaceChildren();
    await refreshData();
  });
  const device = params.get('device') ?? 'auto';
  try {
    state.pmg = await Pmg.load({
      device, llmBaseUrl: params.get('models') ?? '../../models/',
      onProgress: (p) => setBar('#load-bar', '#load-text', p.total ? p.loaded / p.total : 0, p.phase === 'download' ? `Downloading the language model (once): ${Math.round((100 * p.loaded) / p.total)}%` : `${p.phase}…`),
    });
  } catch (e) {
    setBar('#load-bar', '#load-text', 0, `Could not load the model: ${e.name}: ${e.message}`);
    return;
  }
  const info = await state.pmg.info();
  setBar('#load-bar', '#load-text', 1, `Ready on ${info.backend === 'webgpu' ? 'WebGPU' : 'the CPU'} (${info.adapter})`);
  if (info.backend !== 'webgpu') {
    $('#backend').hidden = false;
    $('#backend').textContent = 'No hardware WebGPU here: running on the CPU (slower, same results).';
  }
  for (const e of await state.pmg.history.list()) if (e.type === 'message') say('You', e.text);
  await refreshData();
  $('#generate').disabled = false;
  document.body.dataset.ready = '1';
}

main();
