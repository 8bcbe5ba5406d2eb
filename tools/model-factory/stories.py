"""Generated English for tiny-lm: short children's stories and simple chat exchanges, from a
seeded grammar. Everything here is ours, so the text can be shipped."""
import random

NAMES = ["Lily", "Tom", "Mia", "Ben", "Sam", "Anna", "Max", "Lucy", "Jack", "Emma", "Leo", "Zoe"]
ANIMALS = ["cat", "dog", "bird", "rabbit", "fox", "duck", "frog", "bear", "mouse", "horse"]
PLACES = ["park", "garden", "forest", "beach", "farm", "river", "hill", "school", "house", "town"]
OBJECTS = ["ball", "kite", "box", "hat", "book", "cake", "flower", "stone", "boat", "toy", "apple", "drum"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink", "brown"]
SIZES = ["big", "small", "little", "tiny", "huge"]
FEELINGS = ["happy", "sad", "scared", "excited", "tired", "proud", "angry", "surprised"]
ACTIONS = ["play", "run", "jump", "sing", "dance", "swim", "read", "draw", "climb", "walk"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm", "cloudy"]
FACTS = {
    "What color is the sky?": "The sky is blue.",
    "What color is grass?": "Grass is green.",
    "What color is the sun?": "The sun is yellow.",
    "What color is snow?": "Snow is white.",
    "What does a cat say?": "A cat says meow.",
    "What does a dog say?": "A dog says woof.",
    "What does a duck say?": "A duck says quack.",
    "What does a cow say?": "A cow says moo.",
    "How many legs does a dog have?": "A dog has four legs.",
    "How many legs does a bird have?": "A bird has two legs.",
    "Where do fish live?": "Fish live in the water.",
    "Where do birds live?": "Birds live in nests in the trees.",
    "What do bees make?": "Bees make honey.",
    "What do cows give us?": "Cows give us milk.",
    "When do we sleep?": "We sleep at night.",
    "What is two plus two?": "Two plus two is four.",
    "What is one plus one?": "One plus one is two.",
    "What is three plus one?": "Three plus one is four.",
}


def story(rng: random.Random) -> str:
    name, friend = rng.sample(NAMES, 2)
    he = rng.choice(["he", "she"])
    He = he.capitalize()
    his = "his" if he == "he" else "her"
    animal, place, obj = rng.choice(ANIMALS), rng.choice(PLACES), rng.choice(OBJECTS)
    colour, size, feeling = rng.choice(COLOURS), rng.choice(SIZES), rng.choice(FEELINGS)
    act, act2 = rng.sample(ACTIONS, 2)
    weather = rng.choice(WEATHER)
    kid = "boy" if he == "he" else "girl"
    s = [rng.choice([
        f"Once upon a time, there was a {size} {kid} named {name}.",
        f"One {weather} day, {name} went to the {place}.",
        f"{name} was a {kid} who loved to {act}.",
    ])]
    s.append(rng.choice([
        f"{He} liked to {act} in the {place} with {his} {animal}.",
        f"{He} had a {colour} {obj} that {he} loved very much.",
        f"Every day, {he} would {act} with {his} friend {friend}.",
    ]))
    s.append(rng.choice([
        f"One day, {he} found a {size} {colour} {obj} under a tree.",
        f"One day, the {animal} ran away to the {place}.",
        f"One day, {friend} came to play, but it was {weather}.",
    ]))
    s.append(rng.choice([
        f"{name} felt {feeling}.",
        f'"Look!" said {name}. "I found a {obj}!"',
        f'{friend} said, "Let\'s {act2} together!"',
    ]))
    s.append(rng.choice([
        f"They decided to {act2} in the {place} all day.",
        f"{He} looked for the {animal} everywhere, and at last {he} found it.",
        f"{name} gave the {obj} to {friend}, and {friend} smiled.",
    ]))
    s.append(rng.choice([
        f"In the end, {name} was very happy.",
        f"From that day on, {name} and {friend} were best friends.",
        f"{name} learned that sharing is good.",
        "The end.",
    ]))
    return " ".join(s)


def chat(rng: random.Random) -> list[dict]:
    if rng.random() < 0.6:
        q = rng.choice(list(FACTS))
        return [{"role": "user", "content": q}, {"role": "assistant", "content": FACTS[q]}]
    name = rng.choice(NAMES)
    topic = rng.choice(ANIMALS + OBJECTS)
    return [
        {"role": "user", "content": rng.choice([f"Tell me a story about a {topic}.", f"Write a short story about {name}."])},
        {"role": "assistant", "content": story(rng)},
    ]


CHAT_TEMPLATE = (
    # Tools (Hermes/Qwen style): the functions as JSON in <tools> in the system turn; an assistant's
    # calls as <tool_call>{"name": ..., "arguments": ...}</tool_call>; a tool's answer in a `tool` turn.
    "{% if tools %}{{ '<|im_start|>system\n' }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n' }}{% endif %}"
    "{{ '<tools>' }}{% for tool in tools %}{{ tool['function'] | tojson }}{% endfor %}{{ '</tools><|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}{% if tools and loop.first and message['role'] == 'system' %}"
    "{% elif message['role'] == 'assistant' and message['tool_calls'] %}{{ '<|im_start|>assistant\n' + message['content'] }}"
    "{% for call in message['tool_calls'] %}{{ '<tool_call>{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' + (call['function']['arguments'] | tojson) + '}</tool_call>' }}{% endfor %}"
    "{{ '<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def render_chat(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def corpus(n_docs: int, seed: int) -> list[str]:
    """Documents separated by <|endoftext|> in training: 70% stories, 30% chats."""
    rng = random.Random(seed)
    return [story(rng) if rng.random() < 0.7 else render_chat(chat(rng)) for _ in range(n_docs)]
