// Media settings from the server's audio policy, and the SDP munging that
// applies the Opus parameters browsers have no API for.
//
// Calls (`call.media`) and voice rooms (the join answer's `media`) carry
// the same policy: {audio: {echoCancellation, noiseSuppression,
// autoGainControl, channelCount}, opus: {useinbandfec, usedtx,
// maxaveragebitrate, stereo, fmtp}}.

const DEFAULTS = {
  constraints: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  opus: { useinbandfec: 1, usedtx: 1, maxaveragebitrate: 32000, stereo: 0 },
};

/** {constraints, opus} from a call's `media` or a voice room's join `media`. */
export function normalize(policy = {}) {
  const audio = policy.audio && typeof policy.audio === 'object' ? policy.audio : {};
  const constraints = { ...DEFAULTS.constraints };
  for (const key of Object.keys(constraints)) if (key in audio) constraints[key] = audio[key];
  const opus = { ...DEFAULTS.opus };
  const o = policy.opus || {};
  for (const key of Object.keys(opus)) if (key in o) opus[key] = Number(o[key]);
  return { constraints, opus };
}

/** What a call asks of the camera. */
export const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

/** The microphone (and camera for video) with the policy's processing. */
export function getMedia(policy, { video = false } = {}) {
  const { constraints } = normalize(policy);
  return navigator.mediaDevices.getUserMedia({
    audio: constraints,
    video: video ? CAMERA : false,
  });
}

/**
 * Rewrites the Opus `a=fmtp` line of an SDP with the policy's parameters
 * (FEC, DTX, bitrate, mono), adding one if the codec has none. Other
 * codecs and lines are left as they are.
 */
export function mungeOpus(sdp, policy) {
  const { opus } = normalize(policy);
  const lines = sdp.split(/\r\n/);
  const payloads = new Set();
  for (const line of lines) {
    const m = /^a=rtpmap:(\d+) opus\/48000/i.exec(line);
    if (m) payloads.add(m[1]);
  }
  if (!payloads.size) return sdp;
  const wanted = {
    useinbandfec: String(opus.useinbandfec),
    usedtx: String(opus.usedtx),
    maxaveragebitrate: String(opus.maxaveragebitrate),
    stereo: String(opus.stereo),
  };
  const merge = (params) => {
    const map = new Map();
    for (const part of params.split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k) map.set(k.toLowerCase(), v.join('='));
    }
    for (const [k, v] of Object.entries(wanted)) map.set(k, v);
    return [...map].map(([k, v]) => `${k}=${v}`).join(';');
  };
  const seen = new Set();
  const out = [];
  for (const line of lines) {
    const fmtp = /^a=fmtp:(\d+) (.*)$/.exec(line);
    if (fmtp && payloads.has(fmtp[1])) {
      seen.add(fmtp[1]);
      out.push(`a=fmtp:${fmtp[1]} ${merge(fmtp[2])}`);
      continue;
    }
    out.push(line);
    const rtpmap = /^a=rtpmap:(\d+) opus\/48000/i.exec(line);
    if (rtpmap && !sdp.includes(`a=fmtp:${rtpmap[1]} `)) {
      seen.add(rtpmap[1]);
      out.push(`a=fmtp:${rtpmap[1]} ${merge('')}`);
    }
  }
  return out.join('\r\n');
}

/** Applies the policy to a description before it is set or sent. */
export function munged(description, policy) {
  return { type: description.type, sdp: mungeOpus(description.sdp, policy) };
}

/** The server's ICE servers (STUN, and short-lived TURN credentials). */
export async function iceServers(api) {
  try {
    const config = await api.get('/rtc/ice-servers');
    return (config.ice_servers || []).map((s) => ({ urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined }));
  } catch {
    return [];
  }
}
