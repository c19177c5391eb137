// The official `openai` Node SDK (OpenAIRealtimeWS from openai/realtime/ws): a voice turn, then a barge-in.
//
//   NODE_EXTRA_CA_CERTS=~/.mitmproxy/mitmproxy-ca-cert.pem node openai_ws.mjs https://127.0.0.1:8080/v1   # rtproxy record
//   node openai_ws.mjs http://127.0.0.1:8765/v1                                                          # rtproxy replay
//
// The SDK always connects to wss:// (buildRealtimeURL sets the protocol to wss whatever the
// baseURL says). `rtproxy record` in reverse mode accepts TLS on its port (mitmproxy terminates
// it with its own CA, hence NODE_EXTRA_CA_CERTS). `rtproxy replay` serves plain ws:// only, so
// for an http:// base this driver passes `options.createConnection` (handed through to the
// `ws` package) to carry the SDK's wss:// URL over a plain TCP socket.
//
// session.update, 600 ms of audio in 100 ms appends, commit, response.create, read to
// response.done; then truncate the assistant item at half of its audio and wait for
// conversation.item.truncated. Exits 0 when that completed with no error event.
import net from 'node:net';
import fs from 'node:fs';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';

const base = process.argv[2];
const plain = base.startsWith('http://');
const client = new OpenAI({ apiKey: 'sk-test-clients-0123456789abcdef', baseURL: base });
const options = plain ? { createConnection: (opts) => net.connect(opts) } : {};
const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options }, client);

const speechFile = new URL('../data/speech_24k.pcm', import.meta.url);
const pcm = fs.existsSync(speechFile) ? fs.readFileSync(speechFile).subarray(0, 48 * 600) : Buffer.alloc(48 * 600);
const events = [];
let audioBytes = 0;
const errors = [];
const result = (ok, extra = {}) => {
  console.log('RESULT ' + JSON.stringify({ ok, client: 'openai-node', events: events.length, audio_bytes: audioBytes, errors, ...extra }));
  process.exit(ok ? 0 : 1);
};
setTimeout(() => result(false, { timeout: true, last: events.slice(-3) }), 20000).unref();

rt.on('event', (ev) => events.push(ev.type));
rt.on('error', (err) => { errors.push(String(err.message)); result(false); });
rt.on('session.created', () => {
  rt.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.' } });
});
rt.on('session.updated', () => {
  for (let i = 0; i < pcm.length; i += 4800) {
    rt.send({ type: 'input_audio_buffer.append', audio: pcm.subarray(i, i + 4800).toString('base64') });
  }
  rt.send({ type: 'input_audio_buffer.commit' });
  rt.send({ type: 'response.create' });
});
rt.on('response.output_audio.delta', (ev) => { audioBytes += Buffer.from(ev.delta, 'base64').length; });
rt.on('response.done', (ev) => {
  const item = ev.response.output[0];
  const heardMs = Math.floor(audioBytes / 48 / 2);
  rt.send({ type: 'conversation.item.truncate', item_id: item.id, content_index: 0, audio_end_ms: heardMs });
});
rt.on('conversation.item.truncated', (ev) => {
  rt.close();
  rt.socket.on('close', () => result(errors.length === 0 && audioBytes > 0, { truncated_at_ms: ev.audio_end_ms }));
});
