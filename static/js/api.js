// Transport only: every request the page makes. Error responses become Error(detail).
import * as exportsPanel from './exports.js';

export class ApiError extends Error {
  constructor(message, status, url) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.url = url;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// FastAPI answers {"detail": "text"} or, for validation errors, {"detail": [{loc, msg}, ...]}.
function detailText(detail) {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => (d && d.msg ? `${(d.loc || []).slice(1).join('.') || 'request'}: ${d.msg}` : JSON.stringify(d))).join('; ');
  }
  return JSON.stringify(detail);
}

async function errorFrom(response) {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    if (body && body.detail !== undefined) return detailText(body.detail);
  } catch {
    /* not JSON: fall through */
  }
  const tail = text && !text.trimStart().startsWith('<') ? `: ${text.slice(0, 200)}` : '';
  return `${response.status} ${response.statusText || 'error'}${tail}`;
}

// A 503 with Retry-After (a model still being exported, or the server busy) is retried by itself,
// after the delay the server names, for at most MAX_WAIT_MS; the export panel shows the progress.
const MAX_WAIT_MS = 30 * 60 * 1000;
const MAX_RETRIES = 1000;

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new DOMException('aborted', 'AbortError'));
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new DOMException('aborted', 'AbortError'));
    }, { once: true });
  });
}

async function retryDelay(response) {
  const seconds = Number(response.headers.get('Retry-After'));
  if (response.status !== 503 || !Number.isFinite(seconds)) return null;
  const body = await response.clone().json().catch(() => null);
  return { ms: Math.min(30, Math.max(1, seconds)) * 1000, body };
}

export async function request(url, options = {}, as = 'json') {
  const t0 = performance.now();
  let done = null;
  try {
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(url, options);
      } catch (err) {
        if (err.name === 'AbortError') throw err;
        throw new ApiError(`cannot reach the server (${err.message})`, 0, url);
      }
      const retry = !response.ok && attempt < MAX_RETRIES && performance.now() - t0 < MAX_WAIT_MS ? await retryDelay(response) : null;
      if (retry) {
        if (!done) done = exportsPanel.waiting();
        exportsPanel.show(retry.body);
        await sleep(retry.ms, options.signal);
        continue;
      }
      if (!response.ok) throw new ApiError(await errorFrom(response), response.status, url);
      return as === 'blob' ? response.blob() : response.json();
    }
  } finally {
    if (done) done();
  }
}

const post = (url, body, signal) => request(url, { method: 'POST', body, signal });

export const listModels = (signal) => request('/api/models', { signal });

export const getManifest = (name, weights, signal) =>
  request(`/api/models/${encodeURIComponent(name)}${query({ weights })}`, { signal });

export const listSamples = (signal) => request('/static/samples/index.json', { signal });

export const sampleUrl = (file) => `/static/samples/${encodeURIComponent(file)}`;

export const fetchSample = (file, signal) => request(sampleUrl(file), { signal }, 'blob');

export const imageUrl = (id) => `/api/images/${encodeURIComponent(id)}`;

export function uploadImage(blob, filename, signal) {
  const form = new FormData();
  form.append('image', blob, filename || 'image');
  return post('/api/images', form, signal);
}

// p: {imageId, weights, gates, bn, k, featureMaps, target}
function imageQuery(p) {
  return query({
    image_id: p.imageId,
    weights: p.weights,
    gates: p.gates,
    bn: p.bn,
    k: p.k,
    feature_maps: p.featureMaps,
    target: p.target,
    sections: p.sections,
  });
}

export const analyze = (name, p, signal) => post(`/api/models/${encodeURIComponent(name)}/analyze${imageQuery(p)}`, null, signal);

export const gradients = (name, p, signal) =>
  post(`/api/models/${encodeURIComponent(name)}/gradients${imageQuery(p)}`, null, signal);

export const lesion = (name, p, signal) => post(`/api/models/${encodeURIComponent(name)}/lesion${imageQuery(p)}`, null, signal);

// p: {imageId, weights, gates, bn, method, layer, target, samples, steps, overlays} (charts/explain.js: explainParams)
export function explain(name, p, signal) {
  const q = query({
    image_id: p.imageId, weights: p.weights, gates: p.gates, bn: p.bn, method: p.method, layer: p.layer,
    target: p.target, samples: p.samples, steps: p.steps, overlays: p.overlays,
  });
  return post(`/api/models/${encodeURIComponent(name)}/explain${q}`, null, signal);
}

export const labLandscape = (model, signal) => request(`/api/lab/landscapes/${encodeURIComponent(model)}`, { signal });

export const depthSweep = (p, signal) =>
  request(`/api/gradients/depth-sweep${query({ bn: p.bn, weights: p.weights, depths: p.depths, image_id: p.imageId })}`, { signal });

// The normalisations side by side on one conv layer's output: p {imageId, weights, gates, layer, groups}.
export function normalizations(name, p, signal) {
  const q = query({ image_id: p.imageId, weights: p.weights, gates: p.gates, layer: p.layer, groups: p.groups });
  return post(`/api/models/${encodeURIComponent(name)}/normalizations${q}`, null, signal);
}

export const bnClaims = (signal) => request('/api/lab/bn-claims', { signal });

export function featureMap(name, p, signal) {
  const q = query({ image_id: p.imageId, tap: p.tap, channel: p.channel, gates: p.gates, bn: p.bn, weights: p.weights });
  return request(`/api/models/${encodeURIComponent(name)}/featuremap${q}`, { signal });
}

// Keep a stored image through the store's evictions (an embed link or a preset now refers to it).
export function pinImage(id) {
  if (!/^[0-9a-f]{64}$/.test(id || '')) return Promise.resolve(null);
  return request(`/api/images/${id}/pin`, { method: 'POST' }).catch((err) => {
    console.warn('resviz: could not pin the image', err);
    return null;
  });
}

// A JSON request whose failure reads as a sentence for the page's error box: "Could not reach the
// server: …", "Too large: …" (413) or `${refused}: …` with the server's message.
export async function ask(url, options = {}, refused = 'The server refused the request') {
  try {
    return await request(url, { ...options, headers: { Accept: 'application/json', ...(options.headers || {}) } });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    if (!err.status) throw new Error(`Could not reach the server: ${err.message}`);
    throw new Error(err.status === 413 ? `Too large: ${err.message}` : `${refused}: ${err.message}`);
  }
}

/** GET a JSON document (throws ApiError with the server's message on failure). */
export const getJSON = (url, signal) => request(url, { signal });
