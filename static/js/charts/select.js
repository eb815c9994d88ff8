// Which tap, block, BN layer and channel a chart shows for a selection {layer, block, channel}: one
// rule for the Explore page's state, an embed's link and a standalone export (pure functions).

// The chosen tap: the selection's layer, else the chosen block's output (its tap carries the block's id),
// else the first block output.
export function chosenLayer(a, sel) {
  const byId = (id) => (id ? a.layers.find((l) => l.id === id) : undefined);
  return byId(sel.layer) || byId(sel.block) || a.layers.find((l) => l.kind === 'block') || a.layers[0];
}

// Nearest tap at or before the chosen one that satisfies pred (else the first one after it).
export function nearestLayer(a, sel, pred) {
  const i = Math.max(0, a.layers.indexOf(chosenLayer(a, sel)));
  for (let j = i; j >= 0; j--) if (pred(a.layers[j])) return a.layers[j];
  for (let j = i + 1; j < a.layers.length; j++) if (pred(a.layers[j])) return a.layers[j];
  return null;
}

export const chosenBlock = (a, sel) => a.blocks.find((b) => b.id === sel.block) || a.blocks[0];

const channelOr = (channel, count, fallback) => (channel !== null && channel !== undefined && channel < count ? channel : fallback);

// The feature-map chart's tap and channel (null when the analysis has no feature maps).
export function featureMapChoice(a, sel) {
  const tap = nearestLayer(a, sel, (l) => Boolean(a.feature_maps?.[l.id]));
  if (!tap) return null;
  return { tap, channel: channelOr(sel.channel, tap.shape[1], a.feature_maps[tap.id].channels[0]) };
}

// The batch-norm chart's BN layer and channel.
export function bnChoice(a, sel) {
  const ids = new Set(a.batchnorm.map((b) => b.id));
  const bn = a.batchnorm.find((b) => b.id === nearestLayer(a, sel, (l) => ids.has(l.id)).id);
  return { bn, channel: channelOr(sel.channel, bn.channels, 0) };
}

// The layers an explanation can be asked at: the stem's last tap (relu on CIFAR nets, maxpool on ImageNet
// nets), then every block, from the manifest.
export function explainLayerIds(manifest) {
  const stem = manifest.taps.filter((t) => t.kind === 'stem').pop();
  return [...(stem ? [stem.id] : []), ...manifest.blocks.map((b) => b.id)];
}

// The explanation's layer: the selection's layer or block where it is one of those, else the last block
// (as explain_layer in app/lecture/catalogue.py, which resolves an embed's or an export's link).
export function explainLayer(ids, sel) {
  if (ids.includes(sel.layer)) return sel.layer;
  if (ids.includes(sel.block)) return sel.block;
  return ids[ids.length - 1];
}
