"""Tool-use chats for tiny-llama: a handful of functions (weather, time, arithmetic), asks that need
one of them or none, and the turns that follow a call (the tool's result, then an answer in text).

A chat offers the function its ask needs among others, in a random order, or offers none that
fits (the answer is then text). A call is written as Easel's constrained decoding writes it:
`<tool_call>{"name": NAME, "arguments": ARGS}</tool_call>`, ARGS compact JSON. The chats are
rendered by chat_render.mjs with the model's own chat template and @huggingface/jinja, the code
that renders them in Easel, so the training text and a served prompt are the same text.

Held-out asks use cities and number pairs that no training chat has."""
import json
import random

import stories

TOOLS = {
    "get_weather": {"name": "get_weather", "description": "The weather now in a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    "get_time": {"name": "get_time", "description": "The time now in a time zone",
                 "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "EST", "JST"]}}, "required": ["zone"]}},
    "add": {"name": "add", "description": "Add two numbers",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
    "multiply": {"name": "multiply", "description": "Multiply two numbers",
                 "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
}
CITIES = ["Paris", "London", "Tokyo", "Cairo", "Lima", "Oslo", "Rome", "Berlin", "Madrid", "Dublin", "Vienna", "Prague",
          "Lisbon", "Athens", "Moscow", "Delhi", "Seoul", "Sydney", "Toronto", "Chicago", "Boston", "Denver", "Nairobi",
          "Bangkok", "Manila", "Jakarta", "Havana", "Quito", "Warsaw", "Zurich", "Geneva", "Milan", "Naples", "Porto"]
HELDOUT_CITIES = ["Kyoto", "Hanoi", "Dakar", "Riga", "Bogota", "Perth"]
ZONES = ["UTC", "CET", "EST", "JST"]
SKIES = ["sunny", "rainy", "cloudy", "windy", "snowy"]
ASKS = {
    "get_weather": ["What is the weather in {city}?", "Is it raining in {city}?", "How warm is it in {city}?", "Weather in {city}?",
                    "Tell me the weather in {city}.", "Is it sunny in {city} today?"],
    "get_time": ["What time is it in {zone}?", "What is the time in {zone}?", "Time in {zone} please.", "Tell me the {zone} time."],
    "add": ["What is {a} plus {b}?", "Add {a} and {b}.", "What is {a} + {b}?", "What is the sum of {a} and {b}?"],
    "multiply": ["What is {a} times {b}?", "Multiply {a} by {b}.", "What is {a} * {b}?", "What is the product of {a} and {b}?"],
}
NO_TOOL = "Sorry, I can not do that with these tools."


def heldout_pair(a: int, b: int) -> bool:
    """A fifth of the number pairs (by a hash of the pair) never appear in training."""
    return (a * 31 + b * 17) % 5 == 0


def draw_ask(rng: random.Random, heldout: bool) -> tuple[str, str, dict]:
    """(function, ask, arguments)."""
    fn = rng.choice(list(ASKS))
    template = rng.choice(ASKS[fn])
    if fn == "get_weather":
        args = {"city": rng.choice(HELDOUT_CITIES if heldout else CITIES)}
    elif fn == "get_time":
        args = {"zone": rng.choice(ZONES)}
    else:
        while True:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            if heldout_pair(a, b) == heldout:
                break
        args = {"a": a, "b": b}
    return fn, template.format(**args), args


def call_text(fn: str, args: dict) -> str:
    return '<tool_call>{"name": ' + json.dumps(fn) + ', "arguments": ' + json.dumps(args, separators=(",", ":")) + "}</tool_call>"


def result_and_answer(fn: str, args: dict, rng: random.Random) -> tuple[str, str]:
    if fn == "get_weather":
        sky, temp = rng.choice(SKIES), rng.randint(-5, 35)
        return json.dumps({"sky": sky, "temp": temp}), f"It is {sky} in {args['city']}, {temp} degrees."
    if fn == "get_time":
        hh, mm = rng.randint(0, 23), rng.randint(0, 59)
        return f"{hh:02d}:{mm:02d}", f"It is {hh:02d}:{mm:02d} {args['zone']}."
    if fn == "add":
        return str(args["a"] + args["b"]), f"{args['a']} plus {args['b']} is {args['a'] + args['b']}."
    return str(args["a"] * args["b"]), f"{args['a']} times {args['b']} is {args['a'] * args['b']}."


def offered(rng: random.Random, needed: str | None) -> list[dict]:
    """The needed function (if any) and 0-3 others, shuffled, in OpenAI's `tools` shape."""
    others = [n for n in TOOLS if n != needed]
    names = rng.sample(others, rng.randint(0 if needed else 1, 3 if needed else len(others)))
    if needed:
        names.append(needed)
    rng.shuffle(names)
    return [{"type": "function", "function": TOOLS[n]} for n in names]


def example(rng: random.Random, heldout: bool = False) -> dict:
    """One chat: {"tools", "messages"} (the last message the assistant's), and what it tests:
    {"expect": function name or None, "arguments"}."""
    kind = rng.random()
    if kind < 0.7:  # an ask a function answers, the function offered
        fn, ask, args = draw_ask(rng, heldout)
        tools = offered(rng, fn)
        messages = [{"role": "user", "content": ask}]
        call = {"id": "call_0", "type": "function", "function": {"name": fn, "arguments": args}}
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        if not heldout and rng.random() < 0.5:
            result, answer = result_and_answer(fn, args, rng)
            messages += [{"role": "tool", "tool_call_id": "call_0", "content": result}, {"role": "assistant", "content": answer}]
        return {"tools": tools, "messages": messages, "expect": fn, "arguments": args}
    if kind < 0.85:  # an ask a function would answer, but none offered fits
        fn, ask, _ = draw_ask(rng, heldout)
        tools = [t for t in offered(rng, None) if t["function"]["name"] != fn] or [{"type": "function", "function": TOOLS["add" if fn != "add" else "get_time"]}]
        return {"tools": tools, "messages": [{"role": "user", "content": ask}, {"role": "assistant", "content": NO_TOOL}], "expect": None}
    # An ask no function is for: answered in text, as without tools.
    messages = stories.chat(rng)
    return {"tools": offered(rng, None), "messages": messages, "expect": None}
