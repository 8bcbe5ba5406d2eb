// Renders chats with a chat template through @huggingface/jinja, the code that renders them in
// Easel, so that the factory trains on the text a served prompt has. Reads a JSON file
// {template, chats: [{messages, tools?, add_generation_prompt?}]}; prints the rendered strings as
// a JSON list.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../package.json', import.meta.url));
const { Template } = require('@huggingface/jinja');
const { template, chats } = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const compiled = new Template(template);
const rendered = chats.map((c) => compiled.render({ messages: c.messages, add_generation_prompt: c.add_generation_prompt ?? false, ...(c.tools?.length ? { tools: c.tools } : {}) }));
console.log(JSON.stringify(rendered));
