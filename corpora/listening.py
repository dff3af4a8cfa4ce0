"""Written conversations that teach what chitchat almost never shows: giving back a fact the person
said a few turns before, and meeting bad or good news with a fitting feeling.

Chitchat's strangers seldom ask "what is my name?", and a model trained on them alone answers it
with a name of its own. These conversations state a fact (a name, a city, a pet, a job, a
favourite, a number), talk of something else for a turn or two (real chitchat exchanges, or the
person asking the bot the same in turn, which it answers with its own), then ask for it back, and
the reply holds the fact: with copy attention the model learns to point into the turns before.
News conversations pair bad news with sympathy and good news with joy, in words that name what
happened.

Everything is built from the lists below by a seeded generator: the same pairs on every machine.
The lists were written apart from the probe suite (corpora/probes.jsonl); tests/test_listening_corpus
checks that no generated message is a probe's turn and no fact given back is a probe's answer.
Use it mixed with chitchat: `chatbot train --corpus chitchat+listening`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from corpora.pairs import Pair

CONVERSATIONS = {"train": 8000, "valid": 400, "test": 400}  # about a tenth of chitchat's pairs
SEEDS = {"train": 1, "valid": 2, "test": 3}
SHARES = {"news": 0.25, "plans": 0.2}  # of the conversations; the rest state a fact and ask it back


def items(text: str) -> list[str]:
    """A comma-separated list: the lists below read as prose does."""
    return text.split(",")


NAMES = items(
    "Aiden,Amara,Anika,Arjun,Astrid,Beatrice,Bruno,Caleb,Camila,Dmitri,Elena,Elif,Emeka,Esther,Felix,"
    "Freya,Gideon,Greta,Hugo,Imani,Ingrid,Isaac,Jasper,Jonas,Kai,Kenji,Lars,Layla,Lucia,Malik,Mateo,Mina,"
    "Nadia,Nico,Noor,Oscar,Pablo,Petra,Quinn,Rafael,Rosa,Rowan,Saanvi,Selin,Silas,Soren,Tamsin,Theo,Uma,"
    "Vera,Wesley,Ximena,Yara,Yusuf,Zara,Zoltan,Anton,Bianca,Cyrus,Delia,Ezra,Fiona,Gemma,Henrik,Ines,"
    "Joaquin,Keira,Lionel,Magnus,Nora,Otto,Paloma,Rhea,Stellan,Talia,Ulrich,Violet,Wren,Yosef,"
    "Ansel,Brigid,Cosima,Dario,Eamon,Farah,"
    "Abigail,Adrian,Alice,Amelia,Andre,Aria,Arthur,Ava,Benjamin,Bella,Carlos,Charlotte,Clara,Daniel,"
    "David,Dylan,Eleanor,Eli,Ella,Ethan,Eva,Gabriel,George,Grace,Harper,Henry,Iris,Ivan,Jack,Jade,James,"
    "Jana,Julia,Julian,Kevin,Laura,Lily,Lucas,Luke,Maya,Mia,Michael,Miles,Naomi,Nathan,Nina,Owen,Paula,"
    "Peter,Ruby,Ryan,Sara,Simon,Sofia,Stella,Thomas,Tyler,Victor,Will,Yuki,Zoe,Ahmed,Fatima,Hiroshi,Mei,"
    "Wei,Chen,Ana,Jorge,Luis,Carmen,Omar,Sven,Aisha,Kofi,Ravi,Anjali,Tomas,Elsa,Hector,Lena,Marta"
)
CITIES = items(
    "Portland,Lisbon,Nairobi,Osaka,Melbourne,Helsinki,Phoenix,Montreal,Edinburgh,Lima,Vienna,Oslo,"
    "Marseille,Naples,Krakow,Halifax,Tucson,Calgary,Dallas,Bergen,Porto,Seville,Leeds,Cardiff,Perth,"
    "Auckland,Quito,Bogota,Hanoi,Manila,Jakarta,Cairo,Tunis,Accra,Dakar,Geneva,Zurich,Hamburg,Munich,"
    "Prague,Budapest,Riga,Tallinn,Vilnius,Sapporo,Kyoto,Taipei,Madrid,Valencia,Antwerp,Utrecht,Glasgow,"
    "Belfast,Savannah,Omaha,Memphis,Nashville,Raleigh,Richmond,Sacramento,Spokane,Anchorage,Honolulu,"
    "Pittsburgh,Cleveland,Detroit,"
    "Atlanta,Baltimore,Boise,Charlotte,Cincinnati,Columbus,Houston,Indianapolis,Kansas City,Las Vegas,"
    "Los Angeles,Miami,Milwaukee,Minneapolis,New Orleans,Orlando,Philadelphia,Salt Lake City,San Jose,"
    "San Francisco,St. Louis,Tampa,Berlin,Rome,Barcelona,Amsterdam,Brussels,Copenhagen,Stockholm,"
    "Warsaw,Athens,Istanbul,Mumbai,Delhi,Bangkok,Singapore,Seoul,Busan,Beijing,Shanghai,Tokyo,Sydney,"
    "Brisbane,Vancouver,Ottawa,Mexico City,Havana,Santiago,Buenos Aires,Cape Town,Lagos,Dubai,Tel Aviv,"
    "Nice,Lyon"
)
PETS = items("dog,cat,rabbit,hamster,parrot,turtle,goldfish,lizard,ferret,guinea pig,horse,snake")
PET_NAMES = items(
    "Pickles,Mochi,Waffles,Peanut,Ziggy,Bandit,Pepper,Noodle,Olive,Pumpkin,Tofu,Gizmo,Sprout,Marble,"
    "Hazel,Dumpling,Pebble,Socks,Taco,Bean,Rusty,Shadow,Ginger,Mango,Bubbles,Cosmo,Juniper,Nacho,"
    "Poppy,"
    "Buddy,Charlie,Coco,Daisy,Duke,Honey,Kiki,Lola,Lucky,Maple,Misty,Nala,Oreo,Penny,Pip,Rocky,Rosie,"
    "Scout,Simba,Smokey,Sunny,Teddy,Tiger,Toby,Willow,Zeus,Fudge,Cookie,Muffin,Sparky,Bolt,Chester,"
    "Dexter,Finn,Frankie,Harley,Moose,Otis,Pixel,Rolo"
)
JOBS = items(
    "an architect,an electrician,a plumber,a librarian,a firefighter,a pharmacist,a carpenter,"
    "an accountant,a photographer,a lawyer,a veterinarian,a journalist,a welder,a barista,a florist,"
    "a surgeon,a translator,a bus driver,a farmer,a tailor,a data analyst,a paramedic,a scientist,"
    "an engineer,a mail carrier,a butcher,"
    "a dental hygienist,a cashier,a painter,a musician,a writer,an actor,a designer,a police officer,"
    "a soldier,a judge,a banker,a gardener,a cleaner,a waiter,a receptionist,a therapist,a coach,"
    "a researcher,a professor,a salesman,a manager,a nanny,a truck driver,an editor,a sailor,"
    "a security guard,an optician,a zookeeper"
)
FAVOURITES = {
    "band": (
        "Radiohead,Queen,Nirvana,Abba,the Killers,Arctic Monkeys,Fleetwood Mac,Blondie,"
        "Muse,Oasis,Blur,Weezer,U2,Genesis,Kiss,Pearl Jam,Daft Punk,Gorillaz,Bon Jovi,Journey,"
        "Toto,Aerosmith"
    ),
    "food": (
        "lasagna,ramen,tacos,dumplings,paella,curry,burritos,pancakes,falafel,risotto,pho,bibimbap,"
        "enchiladas,gnocchi,kebabs,biryani,goulash,moussaka,waffles,bagels,nachos,omelettes,"
        "pierogi,gumbo"
    ),
    "sport": (
        "volleyball,hockey,baseball,rugby,cricket,golf,swimming,badminton,cycling,surfing,climbing,"
        "skiing,boxing,fencing,rowing,karate,judo,squash,lacrosse,archery,snowboarding,handball"
    ),
    "color": (
        "orange,purple,yellow,teal,red,pink,silver,maroon,turquoise,lavender,navy,beige,magenta,"
        "indigo,gold,crimson,mint,coral,olive"
    ),
    "movie": (
        "Inception,Rocky,Up,Alien,Frozen,Gladiator,Amelie,Casablanca,Shrek,Coco,Psycho,"
        "Heat,Vertigo,Ratatouille,Avatar,Memento,Jumanji,Grease,Hook,Twister,Speed,Bambi"
    ),
    "book": (
        "Dune,Beloved,Matilda,Ulysses,Frankenstein,Dracula,Persuasion,Hatchet,Wonder,Hamlet,Walden,"
        "Rebecca,Holes,Coraline,Lolita,Beowulf,Heidi,Ivanhoe,Middlemarch"
    ),
    "season": "autumn,winter,spring,summer",
    "drink": (
        "lemonade,chai,hot chocolate,orange juice,root beer,iced tea,milkshakes,"
        "sparkling water,cola,cider,kombucha,smoothies"
    ),
    "subject": (
        "history,chemistry,geography,algebra,physics,art,music,literature,economics,zoology,"
        "calculus,statistics,drama,latin,sociology,astronomy"
    ),
    "game": (
        "Tetris,Monopoly,Scrabble,Fortnite,Uno,Catan,Tekken,Pokemon,Halo,Portal,Risk,Clue,Jenga,Sudoku,Solitaire,Doom"
    ),
}
INSTRUMENTS = items("piano,cello,drums,trumpet,flute,saxophone,harp,ukulele,clarinet,banjo,oboe,tuba,bass,organ")
CARS = items(
    "Honda,Subaru,Ford,Volvo,Tesla,Jeep,Mazda,Kia,Nissan,Hyundai,Volkswagen,Audi,Fiat,Mini,Chevy,Dodge,Lexus,Porsche"
)
STUDIES = items("nursing,law,medicine,architecture,philosophy,psychology,engineering,accounting,linguistics")
LANGUAGES = items("French,German,Italian,Korean,Japanese,Portuguese,Arabic,Hindi,Russian,Dutch,Polish,Greek")
RELATIVES = items("brother,mother,father,son,daughter,husband,cousin,aunt,uncle,grandma,best friend")
MONTHS = items("January,February,March,April,May,June,August,September,October,November,December")
NUMBERS = items("five,six,seven,eight")


def _facts(rng: random.Random) -> dict:
    """One fact each kind could state: (statements, questions, answers, acknowledgements), {slots}."""
    animal, favourite = rng.choice(PETS), rng.choice(sorted(FAVOURITES))
    relative, count, kin = rng.choice(RELATIVES), rng.choice(NUMBERS), rng.choice(["brothers", "sisters", "kids"])
    job = rng.choice(JOBS)
    return {
        "name": (
            [
                "my name is {v}.",
                "hi, I'm {v}.",
                "hello, my name's {v}.",
                "you can call me {v}.",
                "I am {v}, by the way.",
                "everyone calls me {v}.",
                "hey! {v} here.",
                "I'm called {v}.",
            ],
            [
                "what is my name?",
                "what's my name?",
                "do you know my name?",
                "do you remember my name?",
                "what did I say my name is?",
                "what am I called?",
                "who am I?",
                "remind me, what's my name?",
            ],
            ["Your name is {v}.", "You are {v}.", "You told me your name is {v}.", "You're {v}!", "{v}, right?"],
            ["Nice to meet you, {v}!", "Hi {v}, how are you today?", "{v} is a lovely name.", "Hello {v}!"],
            {"v": rng.choice(NAMES)},
        ),
        "city": rng.choice(
            [
                (
                    ["I live in {v}.", "I live in {v} now.", "home for me is {v}."],
                    [
                        "where do I live?",
                        "which city do I live in?",
                        "where is my home?",
                        "do you remember where I live?",
                    ],
                    ["You live in {v}.", "In {v}.", "You said you live in {v}."],
                ),
                (
                    ["I'm from {v}.", "I come from {v}.", "I was born and raised in {v}."],
                    ["where am I from?", "where do I come from?", "which city am I from?"],
                    ["You are from {v}.", "{v}, you said.", "You come from {v}."],
                ),
                (
                    ["I just moved to {v}.", "last month I moved to {v}."],
                    ["where did I move to?", "which city did I move to?"],
                    ["You moved to {v}.", "To {v}."],
                ),
            ]
        )
        + (
            ["{v} sounds like a nice place.", "Oh, I've heard good things about {v}.", "How do you like {v}?"],
            {"v": rng.choice(CITIES)},
        ),
        "pet": (
            [
                "I have a {a} named {v}.",
                "my {a} is called {v}.",
                "I got a {a} and called it {v}.",
                "my {a}'s name is {v}.",
            ],
            [
                "what is my {a} called?",
                "what's my {a}'s name?",
                "what did I call my {a}?",
                "do you remember my {a}'s name?",
            ],
            ["Your {a} is called {v}.", "{v}!", "You called your {a} {v}.", "Its name is {v}."],
            ["Aww, {v} is a cute name for a {a}.", "I love the name {v}!", "How old is {v}?"],
            {"v": rng.choice(PET_NAMES), "a": animal},
        ),
        "pet kind": (
            ["I have a pet {v}.", "I just got a {v}.", "we keep a {v} at home."],
            ["what pet do I have?", "what animal do I have?", "do you remember what pet I have?"],
            ["You have a {v}.", "A {v}!", "You said you have a {v}."],
            ["I'd love to have a {v}.", "A {v}! What's it like?", "How long have you had your {v}?"],
            {"v": animal},
        ),
        "job": (
            ["I work as {j}.", "I'm {j}.", "I've been {j} for ten years.", "for work I'm {j}."],
            ["what do I do for work?", "what is my job?", "what's my job?", "what do I do for a living?"],
            ["You are {j}.", "You work as {j}.", "You're {j}, you told me."],
            ["Being {j} sounds interesting.", "Do you like being {j}?", "Wow, {j}! Is it hard?"],
            {"v": job.split(" ", 1)[1], "j": job},
        ),
        "favourite": (
            ["my favorite {f} is {v}.", "I really love {v}, it's my favorite {f}.", "nothing beats {v} for me."],
            [
                "what is my favorite {f}?",
                "what's my favourite {f}?",
                "which {f} do I like best?",
                "do you remember my favorite {f}?",
            ],
            ["Your favorite {f} is {v}.", "{v}!", "You said you love {v}."],
            ["{v} is a good choice!", "Oh, I like {v} too.", "Why {v}?"],
            {"v": rng.choice(FAVOURITES[favourite].split(",")), "f": favourite},
        ),
        "instrument": (
            ["I play the {v}.", "I've been learning the {v}."],
            ["what instrument do I play?", "which instrument am I learning?"],
            ["You play the {v}.", "The {v}!"],
            ["The {v} is a beautiful instrument.", "How long have you played the {v}?"],
            {"v": rng.choice(INSTRUMENTS)},
        ),
        "car": (
            ["I drive a {v}.", "my car is a {v}."],
            ["what car do I drive?", "what kind of car do I have?"],
            ["You drive a {v}.", "A {v}."],
            ["Is the {v} a good car?", "I've heard {v} makes good cars."],
            {"v": rng.choice(CARS)},
        ),
        "study": (
            ["I study {v}.", "I'm studying {v} at university.", "my major is {v}."],
            ["what do I study?", "what is my major?", "what am I studying?"],
            ["You study {v}.", "{v}!", "Your major is {v}."],
            ["{v} sounds hard!", "Why did you choose {v}?"],
            {"v": rng.choice(STUDIES)},
        ),
        "language": (
            ["I speak {v}.", "I grew up speaking {v}.", "my first language is {v}."],
            ["what language do I speak?", "which language did I grow up with?", "what's my first language?"],
            ["You speak {v}.", "{v}.", "Your first language is {v}."],
            ["Can you teach me some {v}?", "{v} is a beautiful language."],
            {"v": rng.choice(LANGUAGES)},
        ),
        "relative": (
            ["my {r}'s name is {v}.", "my {r} is called {v}.", "I have a {r} named {v}."],
            ["what is my {r}'s name?", "what's my {r} called?", "do you remember my {r}'s name?"],
            ["Your {r} is {v}.", "Your {r} is called {v}.", "{v}."],
            ["{v} is a nice name.", "Are you close to {v}?"],
            {"v": rng.choice(NAMES), "r": relative},
        ),
        "count": (
            ["I have {v} {k}.", "I've got {v} {k}."],
            ["how many {k} do I have?", "how many {k} did I say I have?"],
            ["You have {v} {k}.", "{v}!"],
            ["{v} {k}, wow!", "That's a big family."],
            {"v": count, "k": kin},
        ),
        "birthday": (
            ["my birthday is in {v}.", "I was born in {v}."],
            ["when is my birthday?", "what month was I born in?"],
            ["Your birthday is in {v}.", "In {v}."],
            ["{v} is a nice month for a birthday.", "What do you usually do for your birthday?"],
            {"v": rng.choice(MONTHS)},
        ),
    }


BAD_NEWS = items(
    "my {p} passed away,my {p} was taken to the hospital,my {p} is really sick,I lost my {t},"
    "I broke my {b},my {t} got stolen,I failed my {e},I didn't pass my {e},I was laid off,"
    "my boss fired me,my boyfriend left me,my wife and I are separating,our house caught fire,"
    "my apartment got flooded,I was in a car accident,I have a terrible headache,I've been sick all week,"
    "I feel really sad,I feel so alone,I'm really worried about my {p},my {pet} ran away,my {pet} died,"
    "I didn't get into the program,my {t} broke,my grandma has been very ill,I had the worst day"
)
BAD_FRAMES = [
    "{e}.",
    "{e} today.",
    "{e} last night.",
    "{e} and I feel awful.",
    "ugh, {e}.",
    "I'm so upset, {e}.",
    "{e} a few days ago.",
    "I have bad news, {e}.",
]
SYMPATHY = [
    "I'm so sorry to hear that.",
    "Oh no, I'm really sorry.",
    "That sounds really hard. I'm sorry.",
    "I'm sorry, that must hurt a lot.",
    "Oh no. How are you holding up?",
    "That's awful, I'm so sorry.",
    "I'm sorry you're going through that.",
    "That's so sad. Do you want to talk about it?",
    "I'm really sorry. Take care of yourself.",
    "Oh no, that's terrible. Is there anything that would help?",
    "I'm so sorry. That's a lot to deal with.",
    "That must be really tough. I'm here if you want to talk.",
]
GOOD_NEWS = items(
    "I got a new job,I finally passed my {e},I got a promotion,we're getting married,"
    "my {p} is coming home,I won first prize,I finished my {w},I got accepted to university,"
    "my {p} got better,we bought a new {t},I got a scholarship,my {pet} had puppies,"
    "I got a perfect grade,I beat my personal best,I'm finally on vacation,"
    "my surgery went well,the doctor says I'm healthy,my {p} is out of the hospital,I paid off my {t}"
)
GOOD_FRAMES = ["{e}!", "{e} today!", "guess what, {e}!", "{e}, I'm so happy!", "great news, {e}!", "yay, {e}!"]
JOY = [
    "Congratulations! That's wonderful news.",
    "That's amazing, well done!",
    "Wow, congratulations!",
    "That's great to hear! How will you celebrate?",
    "I'm so happy for you!",
    "That's fantastic news!",
    "Good for you! You must be so proud.",
    "Yay! That's brilliant.",
    "What a relief! I'm really glad.",
    "That's the best news, well done!",
]
NEWS_SLOTS = {
    "p": items("grandfather,grandmother,mom,dad,brother,sister,uncle,aunt,best friend,neighbor"),
    "t": items("phone,laptop,wallet,car,bike,keys,watch"),
    "b": items("arm,wrist,ankle,leg,nose,toe"),
    "e": items("exam,test,interview,audition,driving test,final"),
    "pet": items("dog,cat,rabbit,hamster,parrot"),
    "w": items("thesis,first painting,degree,big project,training"),
}


FILLER_WORDS = 15  # a longer chitchat turn could push the fact out of the pieces the model reads
READ_TURNS = 4  # the turns before the message a model reads (`--context-turns`): a fact asked back is among them


def _filler(rng: random.Random, short: Sequence[Pair], turns: list[str]) -> None:
    """Append 0 to 2 short real chitchat exchanges to `turns`: talk between a fact and its question
    (context only: chitchat itself teaches the replies to them)."""
    for _ in range(rng.choice([0, 1, 1, 2])):
        exchange = rng.choice(short)
        turns += [exchange.source, exchange.reply]


ASKED_OF_ME = {  # a kind asked of the bot in turn: it answers with its own, never the person's
    "name": (["what's your name?", "and what's your name?", "what are you called?"], ["My name is {v}.", "I'm {v}."]),
    "city": (
        ["and where do you live?", "where do you live?", "which city do you live in?"],
        ["I live in {v}.", "In {v}.", "I'm in {v}."],
    ),
    "pet kind": (["do you have a pet?", "what pet do you have?"], ["I have a {v}.", "Yes, a {v}."]),
    "job": (["what do you do for work?", "and what's your job?", "what do you do?"], ["I'm {j}.", "I work as {j}."]),
    "favourite": (
        ["what's your favorite {f}?", "and your favourite {f}?", "which {f} do you like best?"],
        ["My favorite {f} is {v}.", "I love {v}."],
    ),
    "instrument": (["do you play an instrument?", "what instrument do you play?"], ["I play the {v}.", "The {v}."]),
    "study": (["what do you study?", "what's your major?"], ["I study {v}.", "My major is {v}."]),
    "language": (["what language do you speak?", "and what do you speak?"], ["I speak {v}.", "{v}, mostly."]),
    "birthday": (["when is your birthday?", "what month were you born in?"], ["My birthday is in {v}.", "In {v}."]),
}
ASKED_OF_ME_SHARE = 0.5  # of fact conversations: the bot is asked the same kind before the fact is asked back
ASKED_FIRST_SHARE = 0.25  # of fact conversations: they open with the bot asked about itself, nothing said before
ASKED_FIRST_WEIGHTS = {"name": 4, "city": 2, "job": 2}  # the questions a stranger asks first; other kinds 1


def _asked_first(rng: random.Random) -> Pair:
    """A conversation's first question is about the bot ("what's your name?" -> "My name is
    Ethan."): asked with nothing said before, "your" must not be read as "my"."""
    kinds = sorted(ASKED_OF_ME)
    kind = rng.choices(kinds, [ASKED_FIRST_WEIGHTS.get(k, 1) for k in kinds])[0]
    questions, answers = ASKED_OF_ME[kind]
    question = rng.choice([q for q in questions if not q.startswith("and ")])
    template = rng.choice(answers)
    slots = _facts(rng)[kind][-1]  # drawn after the answer's form: the same draws as ever, pair for pair
    question, answer = question.format(**slots), _capital(template.format(**slots))
    return Pair(_capital(question) if rng.random() < 0.5 else question, answer)


def _asked_of_me(rng: random.Random, kind: str, slots: dict) -> Pair | None:
    """The person asks the bot what they told it of themselves ("and where do you live?"); the
    bot answers with another value of the same kind (a favourite of the same sort), so that
    "you" and "I" are told apart: the person's fact is theirs, asked back later."""
    if kind not in ASKED_OF_ME:
        return None
    mine = dict(slots)
    while mine["v"] == slots["v"]:  # a favourite of the same sort; any other kind's slots drawn afresh
        if kind == "favourite":
            mine["v"] = rng.choice(FAVOURITES[slots["f"]].split(","))
        else:
            mine = _facts(rng)[kind][-1]
    questions, answers = ASKED_OF_ME[kind]
    return Pair(rng.choice(questions).format(**mine), _capital(rng.choice(answers).format(**mine)))


ACKNOWLEDGEMENTS = [  # for any fact: a kind's own lines alone become stock lines that fit nowhere else
    "Oh, {v}! Tell me more.",
    "{v}, got it.",
    "{v}? Cool.",
    "I'll remember that: {v}.",
    "Oh really? {v}!",
    "Good to know, {v}.",
    "{v}! That's interesting.",
]
PLANS = [  # neither bad nor good news: something the person does, picked up by name
    (
        ["I'm planning a trip to {v}.", "next month I'm going to {v}.", "we're flying to {v} on Friday."],
        [
            "{v}! What will you do there?",
            "Have fun in {v}!",
            "I've always wanted to see {v}.",
            "How long will you stay in {v}?",
        ],
        "Morocco,Peru,Iceland,Vietnam,Greece,Portugal,Kenya,Norway,Chile,Scotland,Egypt,Ireland,Croatia,Nepal,"
        "Cuba,Jamaica,Alaska,Hawaii,Florida,Oregon,Vermont,Montana,Arizona",
    ),
    (
        ["I watched {v} yesterday.", "I'm watching {v} tonight.", "we saw {v} at the cinema."],
        ["Did you like {v}?", "Oh, {v}! What did you think?", "I've heard {v} is good.", "{v} is a classic."],
        "Rocky,Up,Alien,Frozen,Gladiator,Amelie,Casablanca,Shrek,Psycho,Heat,Vertigo,Avatar,Memento,Grease,"
        "Hook,Twister,Speed,Bambi,Dumbo,Moana,Tangled,Fargo",
    ),
    (
        ["I'm reading {v} right now.", "I just started reading {v}.", "I borrowed {v} from the library."],
        ["How do you like {v}?", "{v}! Is it good so far?", "I've heard {v} is a great read."],
        "Dune,Beloved,Matilda,Ulysses,Frankenstein,Dracula,Persuasion,Hatchet,Wonder,Hamlet,Walden,Rebecca,"
        "Holes,Coraline,Heidi,Ivanhoe,Middlemarch,Jane Eyre,Peter Pan",
    ),
    (
        ["I'm cooking {v} for dinner.", "I had {v} for lunch.", "I'm making {v} tonight."],
        ["Mmm, {v}! Is it hard to make?", "{v} sounds delicious.", "I love {v}! Enjoy it."],
        "lasagna,ramen,tacos,dumplings,paella,curry,burritos,pancakes,falafel,risotto,pho,bibimbap,gnocchi,"
        "kebabs,biryani,goulash,soup,chili,stew,tapas",
    ),
    (
        ["I've been listening to {v} a lot.", "I'm going to see {v} live.", "I just discovered {v}."],
        ["{v}! What's your favorite song?", "I like {v} too.", "Oh, {v} are great live."],
        "Radiohead,Queen,Nirvana,Abba,Muse,Oasis,Blur,Weezer,Genesis,Blondie,Journey,Toto,Aerosmith,Gorillaz",
    ),
    (
        ["I'm going to play {v} this weekend.", "I started {v} lessons.", "I've been doing {v} after work."],
        ["{v}! Are you any good?", "Have fun with {v}!", "How long have you been doing {v}?"],
        "volleyball,hockey,baseball,rugby,cricket,golf,badminton,squash,lacrosse,fencing,judo,karate,archery,bowling",
    ),
    (
        ["I went to the {v} today.", "I'm heading to the {v} later.", "I spent the afternoon at the {v}."],
        ["How was the {v}?", "Did you have fun at the {v}?", "Oh, I like the {v} too."],
        "museum,zoo,library,park,gym,market,aquarium,lake,mall,theater,farm,bakery",
    ),
]


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _fact_conversation(rng: random.Random, chitchat: Sequence[Pair]) -> list[Pair]:
    facts = _facts(rng)
    kinds = rng.sample(sorted(facts), 2 if rng.random() < 0.3 else 1)  # sometimes two facts, one asked back
    turns: list[str] = []
    pairs, said_at = [], {}
    if rng.random() < ASKED_FIRST_SHARE:
        first = _asked_first(rng)
        pairs.append(first)
        turns += [first.source, first.reply]
    elif rng.random() < 0.3:
        _filler(rng, chitchat, turns)
    for kind in kinds:
        statements, _, _, acks, slots = facts[kind]
        acks = ACKNOWLEDGEMENTS if rng.random() < 0.35 else acks
        said, ack = rng.choice(statements).format(**slots), _capital(rng.choice(acks).format(**slots))
        pairs.append(Pair(said, ack, tuple(turns)))
        said_at[kind] = len(turns)
        turns += [said, ack]
    mine = _asked_of_me(rng, kinds[-1], facts[kinds[-1]][-1]) if rng.random() < ASKED_OF_ME_SHARE else None
    if mine:  # the bot asked in turn is the talk between the fact and its question
        pairs.append(mine._replace(context=tuple(turns)))
        turns += [mine.source, mine.reply]
    else:
        _filler(rng, chitchat, turns)
    in_sight = [kind for kind in kinds if len(turns) - said_at[kind] <= READ_TURNS] or kinds[-1:]
    if len(turns) - said_at[in_sight[0]] > READ_TURNS:  # talk pushed every fact out of sight: drop it
        del turns[said_at[kinds[-1]] + 2 :]
    _, questions, answers, _, slots = facts[rng.choice(in_sight)]
    question, answer = rng.choice(questions).format(**slots), _capital(rng.choice(answers).format(**slots))
    pairs.append(Pair(question, answer, tuple(turns)))
    return pairs


def _news_conversation(rng: random.Random, chitchat: Sequence[Pair]) -> list[Pair]:
    bad = rng.random() < 0.6
    events, frames, replies = (BAD_NEWS, BAD_FRAMES, SYMPATHY) if bad else (GOOD_NEWS, GOOD_FRAMES, JOY)
    slots = {k: rng.choice(v) for k, v in NEWS_SLOTS.items()}
    event = rng.choice(events).format(**slots)
    said = rng.choice(frames).format(e=event)
    turns: list[str] = []
    if rng.random() < 0.4:
        _filler(rng, chitchat, turns)
    return [Pair(_capital(said) if rng.random() < 0.5 else said, rng.choice(replies), tuple(turns))]


def _plan_conversation(rng: random.Random, chitchat: Sequence[Pair]) -> list[Pair]:
    statements, replies, values = rng.choice(PLANS)
    value = rng.choice(items(values))
    said, reply = rng.choice(statements).format(v=value), _capital(rng.choice(replies).format(v=value))
    turns: list[str] = []
    if rng.random() < 0.4:
        _filler(rng, chitchat, turns)
    return [Pair(_capital(said) if rng.random() < 0.5 else said, reply, tuple(turns))]


def listening_pairs(split: str, chitchat: Sequence[Pair]) -> list[Pair]:
    """The written conversations of one split, their filler drawn from `chitchat` (that split's)."""
    rng = random.Random(SEEDS[split])
    short = [p for p in chitchat if max(len(p.source.split()), len(p.reply.split())) <= FILLER_WORDS]
    pairs = []
    for _ in range(CONVERSATIONS[split]):
        draw = rng.random()
        make = (
            _news_conversation
            if draw < SHARES["news"]
            else _plan_conversation
            if draw < SHARES["news"] + SHARES["plans"]
            else _fact_conversation
        )
        pairs += make(rng, short)
    return pairs
