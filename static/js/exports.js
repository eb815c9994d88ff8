// The export panel: while the server exports a model's graphs (in its background worker), show each
// pending export with a progress bar and an estimate. api.js calls waiting() when an answer is
// 503 + Retry-After; the panel polls /api/exports until nothing is pending.

const POLL_MS = 1000;
const MAX_POLLS = 3600; // an hour of polling at most, then the panel stops by itself
let timer = null;
let polls = 0;
let waiters = 0;
let last = null;

function panel() {
  let el = document.getElementById('export-progress');
  if (!el) {
    el = document.createElement('section');
    el.id = 'export-progress';
    el.className = 'export-progress';
    el.setAttribute('role', 'status');
    el.setAttribute('aria-live', 'polite');
    el.hidden = true;
    const anchor = document.getElementById('status');
    if (anchor) anchor.after(el);
    else document.body.prepend(el);
  }
  return el;
}

function eta(seconds) {
  if (seconds < 1) return 'almost done';
  if (seconds < 90) return `about ${Math.round(seconds)} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

function row(job) {
  const li = document.createElement('li');
  li.className = `export-job ${job.state}`;
  li.dataset.key = job.key;
  const label = document.createElement('span');
  label.className = 'export-label';
  const done = job.graphs_done.length;
  const what = `${job.model} (${job.weights})`;
  label.textContent =
    job.state === 'running'
      ? `Exporting ${what}: ${done} of ${job.graphs.length} graphs${job.current ? ` (now the ${job.current} graph)` : ''} · ${eta(job.estimate_s)}`
      : `${what} waits for export (${job.position} ahead) · ${eta(job.estimate_s)}`;
  const bar = document.createElement('progress');
  bar.max = 1;
  bar.value = job.progress;
  bar.setAttribute('aria-label', `export of ${what}`);
  li.append(label, bar);
  return li;
}

export function render(snapshot) {
  last = snapshot;
  const el = panel();
  const pending = (snapshot && snapshot.pending) || [];
  if (!pending.length) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  const head = document.createElement('p');
  head.className = 'export-head';
  head.textContent =
    waiters > 0
      ? 'This server is exporting the model for this view to ONNX; the view appears by itself when it is ready.'
      : 'This server is exporting models to ONNX in the background.';
  const list = document.createElement('ul');
  list.append(...pending.map(row));
  el.replaceChildren(head, list);
  el.hidden = false;
}

async function poll() {
  timer = null;
  polls += 1;
  try {
    const r = await fetch('/api/exports', { cache: 'no-store' });
    if (r.ok) render(await r.json());
  } catch {
    /* the server is restarting or unreachable: keep the last view and try again */
  }
  const busy = last && last.busy;
  if ((busy || waiters > 0) && polls < MAX_POLLS) timer = setTimeout(poll, POLL_MS);
}

function ensurePolling() {
  if (timer === null) timer = setTimeout(poll, 0);
}

// Show the export a 503 named (body.export) at once, before the next poll.
export function show(body) {
  const job = body && body.export;
  if (!job) return;
  const others = ((last && last.pending) || []).filter((j) => j.key !== job.key);
  render({ pending: [job, ...others], busy: true });
}

// Called by api.js while a request waits on a 503: polls until done() and nothing is pending.
export function waiting() {
  waiters += 1;
  polls = 0;
  ensurePolling();
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    waiters = Math.max(0, waiters - 1);
    ensurePolling();
  };
}

// On page load: show exports already running (say the defaults after a fresh start).
export function watch() {
  ensurePolling();
}
