// Call quality from RTCPeerConnection.getStats(): round-trip time, jitter,
// packet loss and the audio level of what arrives, as the server's
// `POST /calls/{id}/quality` takes them.

/** One sample: {rtt_ms, jitter_ms, packet_loss, audio_level, codec} (absent fields left out). */
export async function sample(pc, previous = null) {
  const report = await pc.getStats();
  let rtt = null;
  let jitter = null;
  let level = null;
  let codecId = null;
  let lost = 0;
  let received = 0;
  const codecs = new Map();
  report.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') {
      rtt = s.currentRoundTripTime * 1000;
    } else if (s.type === 'remote-inbound-rtp' && s.kind === 'audio' && rtt === null && typeof s.roundTripTime === 'number') {
      rtt = s.roundTripTime * 1000;
    } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      if (typeof s.jitter === 'number') jitter = s.jitter * 1000;
      if (typeof s.audioLevel === 'number') level = s.audioLevel;
      lost += s.packetsLost || 0;
      received += s.packetsReceived || 0;
      codecId = s.codecId || codecId;
    } else if (s.type === 'codec') {
      codecs.set(s.id, s.mimeType);
    }
  });
  const totals = { lost, received };
  // Loss over the last interval when there is one, else since the start.
  const dLost = previous ? lost - previous.totals.lost : lost;
  const dRecv = previous ? received - previous.totals.received : received;
  const out = { totals };
  if (rtt !== null) out.rtt_ms = round(rtt);
  if (jitter !== null) out.jitter_ms = round(jitter);
  if (dLost + dRecv > 0) out.packet_loss = Math.min(1, Math.max(0, dLost / (dLost + dRecv)));
  if (level !== null) out.audio_level = Math.min(1, Math.max(0, level));
  const codec = codecs.get(codecId);
  if (codec) out.codec = codec.replace(/^audio\//, '').slice(0, 40);
  return out;
}

/** The body for the server (without the running totals). */
export function report(s) {
  const { totals, ...body } = s;
  return body;
}

/** "Good", "Fair" or "Poor" for people, from one sample. */
export function grade(s) {
  const loss = s.packet_loss ?? 0;
  const rtt = s.rtt_ms ?? 0;
  if (loss > 0.08 || rtt > 600) return 'Poor';
  if (loss > 0.02 || rtt > 300) return 'Fair';
  return 'Good';
}

function round(n) {
  return Math.round(n * 10) / 10;
}
