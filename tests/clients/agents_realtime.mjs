// @openai/agents-realtime (RealtimeAgent + RealtimeSession, websocket transport): a text turn
// whose tool call the agent loop answers itself.
//
//   node agents_realtime.mjs 'ws://127.0.0.1:8080/v1/realtime?model=gpt-realtime'   # session.connect({ url })
//
// The agent has a get_weather tool; the model calls it, the session runs the tool, sends its
// output and asks for the follow-up response; the flow is complete when that response's
// audio has arrived and the agent's turn ended. Exits 0 then, with no error event.
import { RealtimeAgent, RealtimeSession, tool } from '@openai/agents-realtime';
import { z } from 'zod';

const url = process.argv[2];
const calls = [];
const getWeather = tool({
  name: 'get_weather',
  description: 'Weather for a city.',
  parameters: z.object({ city: z.string() }),
  execute: async ({ city }) => { calls.push(city); return `21 C and sunny in ${city}`; },
});
const agent = new RealtimeAgent({ name: 'Assistant', instructions: 'Be brief.', tools: [getWeather] });
const session = new RealtimeSession(agent, { transport: 'websocket', model: 'gpt-realtime' });

const seen = [];
const errors = [];
let audioBytes = 0;
let toolEnded = false;
const result = (ok, extra = {}) => {
  console.log('RESULT ' + JSON.stringify({ ok, client: 'agents-realtime', tool_calls: calls, audio_bytes: audioBytes, errors, events: seen.length, ...extra }));
  process.exit(ok ? 0 : 1);
};
setTimeout(() => result(false, { timeout: true, last: seen.slice(-5) }), 20000).unref();

session.on('transport_event', (ev) => seen.push(ev.type));
session.on('error', (ev) => { errors.push(String(ev.error?.message ?? JSON.stringify(ev.error))); });
session.on('audio', (ev) => { audioBytes += ev.data.byteLength; });
session.on('agent_tool_end', () => { toolEnded = true; });
session.on('agent_end', () => {
  if (toolEnded && audioBytes > 0) {
    session.close();
    result(errors.length === 0 && calls.length === 1 && calls[0] === 'Paris');
  }
});

await session.connect({ apiKey: 'sk-test-clients-0123456789abcdef', url });
session.sendMessage('What is the weather in Paris?');
