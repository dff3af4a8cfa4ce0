"""The listening conversations of corpora/listening.py in Korean: a fact said (a name, a city, a
pet, a job, a favourite), a second fact or none between, then asked back; bad news met with
sympathy and good news with joy.

The Korean corpus (ChatbotData) is single pairs, no conversations, so nothing in it asks a model
to read the turns before. Particles follow the word before them (`particle`: 이/가, 은/는, 을/를,
이야/야 ...). The lists were written apart from the probe suite, and tests/test_listening_corpus
checks that no fact or news here is a probe's. Use it beside the Korean corpus, a tenth of the
mix, from a model trained on the corpus alone (training/notes/korean.md):
`chatbot train --from MODEL --corpus ChatbotData.csv+listening-ko --context-turns 4 --copy-attention`.
"""

from __future__ import annotations

import random

from corpora.listening import items
from corpora.pairs import Pair

CONVERSATIONS = {"train": 700, "valid": 150, "test": 150}  # ~1,400 pairs: a tenth beside the corpus
SEEDS = {"train": 11, "valid": 12, "test": 13}
NEWS_SHARE = 0.35


NAMES = items(
    "서준,하은,도윤,서연,예준,지우,시우,하윤,주원,수아,지호,채원,은우,지유,건우,다은,현우,소율,우진,윤서,선우,예린"
)
CITIES = items("인천,광주,대전,울산,수원,전주,춘천,강릉,포항,창원,여수,목포,청주,천안,속초,경주,안동,김해,원주,세종")
PETS = items("강아지,고양이,햄스터,토끼,앵무새,거북이")
PET_NAMES = items("보리,콩이,두부,망고,호두,까미,뭉치,루비,복실이,별이,구름이,땅콩,모카,설이")
JOBS = items("의사,요리사,경찰관,소방관,변호사,회계사,디자이너,기자,약사,미용사,개발자,사진작가,번역가,건축가,은행원")
FOODS = items("김치찌개,삼겹살,냉면,비빔밥,짜장면,초밥,치킨,파스타,불고기,라면,김밥,된장찌개")
SPORTS = items("야구,농구,배구,수영,테니스,탁구,배드민턴,볼링,등산,요가")
INSTRUMENTS = items("기타,바이올린,드럼,첼로,플루트,우쿨렐레")
COLOURS = items("빨간색,노란색,초록색,보라색,분홍색,하얀색,검은색,주황색")
SIBLINGS = items("언니,오빠,형,누나,남동생,여동생")
AGES = items("스무,스물두,서른,서른두,마흔")

PARTICLES = {  # after a final consonant, after a vowel
    "이": ("이", "가"),
    "은": ("은", "는"),
    "을": ("을", "를"),
    "이야": ("이야", "야"),
    "이라고": ("이라고", "라고"),
    "이에요": ("이에요", "예요"),
    "이요": ("이요", "요"),
    "으로": ("으로", "로"),
}


def has_final_consonant(word: str) -> bool:
    """Whether a word's last syllable ends in a consonant (받침); non-Hangul counts as a vowel."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def particle(word: str, kind: str) -> str:
    """`word` with the particle `kind` in the form its last syllable takes (으로 after ㄹ is 로)."""
    with_final, without = PARTICLES[kind]
    final = has_final_consonant(word)
    if kind == "으로" and final and (ord(word[-1]) - 0xAC00) % 28 == 8:  # ㄹ
        final = False
    return word + (with_final if final else without)


def _facts(rng: random.Random) -> dict:
    """Each kind of fact: (statements, questions, answers, acknowledgements), its value filled in."""
    name, city, pet, pet_name = rng.choice(NAMES), rng.choice(CITIES), rng.choice(PETS), rng.choice(PET_NAMES)
    job, food, sport = rng.choice(JOBS), rng.choice(FOODS), rng.choice(SPORTS)
    instrument, colour, sibling, sibling_name = (
        rng.choice(INSTRUMENTS),
        rng.choice(COLOURS),
        rng.choice(SIBLINGS),
        rng.choice(NAMES),
    )
    age, p = rng.choice(AGES), particle
    return {
        "name": (
            [f"내 이름은 {p(name, '이야')}.", f"나는 {p(name, '이라고')} 해.", f"난 {p(name, '이야')}, 반가워."],
            ["내 이름이 뭐였지?", "내 이름 알아?", "나 누구게?", "내 이름 기억나?"],
            [f"{p(name, '이라고')} 하셨어요.", f"{name}님이잖아요.", f"{p(name, '이에요')}."],
            [f"반가워요, {name}님!", f"{name}님, 좋은 이름이네요.", f"안녕하세요, {name}님."],
        ),
        "city": (
            [f"나 {city}에 살아.", f"난 {city}에서 살고 있어.", f"요즘 {city}에 살고 있어."],
            ["내가 사는 곳이 어디야?", "나 어디 산다고?", "내가 사는 도시 기억해?"],
            [f"{city}에 사신다고 했어요.", f"{p(city, '이요')}.", f"{city}에 사시잖아요."],
            [f"{city} 좋은 곳이죠.", f"{city} 가 보고 싶어요.", f"{city}에 사시는군요."],
        ),
        "hometown": (
            [f"나 {city} 출신이야.", f"고향은 {p(city, '이야')}.", f"{city}에서 태어나고 자랐어."],
            ["내가 어디 출신이라고 했지?", "내 고향 기억나?", "나 어디서 자랐게?"],
            [f"고향이 {p(city, '이라고')} 하셨어요.", f"{p(city, '이요')}.", f"{city} 출신이시잖아요."],
            [f"{city} 출신이시군요.", f"{city} 좋은 곳이죠."],
        ),
        "moved": (
            [f"얼마 전에 {p(city, '으로')} 이사했어.", f"지난달 {p(city, '으로')} 이사 갔어."],
            ["내가 어디로 이사했지?", "나 어디로 이사 갔다고?"],
            [f"{p(city, '으로')} 이사하셨다고 했어요.", f"{p(city, '이요')}."],
            [f"{city} 생활은 어때요?", f"{city} 좋은 곳이죠."],
        ),
        "pet": (
            [f"우리 집 {pet} 이름은 {p(pet_name, '이야')}.", f"{pet} {p(pet_name, '을')} 키우고 있어."],
            [f"우리 {pet} 이름 기억해?", f"내 {pet} 이름이 뭐였지?", f"내가 키우는 {pet} 이름은?"],
            [f"{p(pet_name, '이요')}!", f"{pet} 이름은 {p(pet_name, '이에요')}.", f"{p(pet_name, '이라고')} 하셨어요."],
            [f"{pet_name}, 귀여운 이름이네요.", f"{p(pet_name, '은')} 몇 살이에요?"],
        ),
        "job": (
            [f"나 {p(job, '으로')} 일하고 있어.", f"나는 {p(job, '이야')}.", f"내 직업은 {p(job, '이야')}."],
            ["내가 무슨 일 하는지 기억해?", "내 직업이 뭐였지?", "나 무슨 일 한다고?"],
            [f"{p(job, '이라고')} 하셨어요.", f"{p(job, '이요')}.", f"{p(job, '으로')} 일하시잖아요."],
            [f"{job}, 멋진 일이네요.", f"{p(job, '은')} 힘들지 않아요?"],
        ),
        "food": (
            [f"제일 좋아하는 음식은 {p(food, '이야')}.", f"나는 {p(food, '을')} 제일 좋아해."],
            ["내가 제일 좋아하는 음식이 뭐였지?", "내가 좋아한다고 한 음식 기억해?"],
            [f"{p(food, '이요')}!", f"{p(food, '이라고')} 하셨어요."],
            [f"{food} 맛있죠.", f"저도 {p(food, '을')} 좋아해요."],
        ),
        "sport": (
            [f"나는 {p(sport, '을')} 좋아해.", f"주말마다 {p(sport, '을')} 해."],
            ["내가 좋아하는 운동이 뭐라고 했지?", "내가 주말마다 하는 운동은?"],
            [f"{p(sport, '이요')}.", f"{p(sport, '이라고')} 하셨어요."],
            [f"{sport} 재미있죠.", f"{p(sport, '은')} 언제부터 했어요?"],
        ),
        "instrument": (
            [f"나는 {p(instrument, '을')} 연주해.", f"요즘 {p(instrument, '을')} 배우고 있어."],
            ["내가 연주하는 악기가 뭐였지?", "내가 배우는 악기 기억해?"],
            [f"{p(instrument, '이요')}.", f"{p(instrument, '이라고')} 하셨어요."],
            [f"{instrument} 소리 좋죠.", f"{p(instrument, '은')} 어렵지 않아요?"],
        ),
        "colour": (
            [f"나는 {p(colour, '을')} 제일 좋아해.", f"좋아하는 색은 {p(colour, '이야')}."],
            ["내가 좋아하는 색이 뭐였지?", "내가 제일 좋아하는 색 기억해?"],
            [f"{p(colour, '이요')}.", f"{p(colour, '이라고')} 하셨어요."],
            [f"{colour} 예쁘죠.", f"{p(colour, '은')} 잘 어울려요."],
        ),
        "sibling": (
            [f"내 {sibling} 이름은 {p(sibling_name, '이야')}.", f"우리 {sibling} 이름은 {p(sibling_name, '이야')}."],
            [f"내 {sibling} 이름이 뭐였지?", f"우리 {sibling} 이름 기억해?"],
            [f"{p(sibling_name, '이요')}.", f"{sibling} 이름은 {p(sibling_name, '이라고')} 하셨어요."],
            [f"{sibling_name}, 좋은 이름이네요.", "두 분 사이좋아요?"],
        ),
        "age": (
            [f"나 {age} 살이야.", f"올해 {age} 살이 됐어."],
            ["내 나이 기억해?", "나 몇 살이게?"],
            [f"{age} 살이라고 하셨어요.", f"{age} 살이요."],
            [f"{age} 살이군요.", "좋은 나이네요."],
        ),
    }


BAD_NEWS = items(
    "{p} 아파서 입원했어,면접에서 떨어졌어,남자친구랑 헤어졌어,{t} 잃어버렸어,회사에서 해고당했어,"
    "요즘 잠을 못 자,{pet} 무지개다리를 건넜어,다리가 부러졌어,사기를 당했어,교통사고가 났어,"
    "계속 눈물이 나,요즘 너무 힘들어,발표를 망쳤어,{p} 돌아가셨어"
)
BAD_FRAMES = ["{e}.", "오늘 {e}.", "나 {e}.", "어제 {e}.", "{e}…"]
SYMPATHY = [  # a list, not `items`: some replies hold a comma
    "정말 속상하시겠어요.",
    "많이 힘드셨겠어요.",
    "마음이 아프네요. 괜찮으세요?",
    "저런, 힘내세요.",
    "그런 일이 있었군요. 푹 쉬세요.",
    "힘든 하루였겠네요.",
    "많이 놀라셨겠어요.",
    "제가 옆에 있을게요.",
]
GOOD_NEWS = items(
    "회사에 합격했어,승진했어,다음 달에 결혼해,여자친구가 생겼어,대회에서 상 받았어,드디어 졸업했어,"
    "시험에서 만점 받았어,{p} 병이 다 나았어,월급이 올랐어,새 집으로 이사했어"
)
GOOD_FRAMES = ["{e}!!", "오늘 {e}!", "나 {e}!", "드디어 {e}!"]
JOY = [
    "축하해요!",
    "정말 잘됐네요!",
    "와, 축하드려요!",
    "기쁜 소식이네요!",
    "멋져요, 축하해요!",
    "고생한 보람이 있네요!",
]
NEWS_SLOTS = {
    "p": items("할머니,할아버지,엄마,아빠,동생,친구"),
    "t": items("지갑,휴대폰,가방,열쇠,노트북"),
    "pet": items("강아지,고양이,햄스터"),
}


def _news(rng: random.Random) -> Pair:
    bad = rng.random() < 0.6
    events, frames, replies = (BAD_NEWS, BAD_FRAMES, SYMPATHY) if bad else (GOOD_NEWS, GOOD_FRAMES, JOY)
    slots = {k: rng.choice(v) for k, v in NEWS_SLOTS.items()}
    slots = {"p": particle(slots["p"], "이"), "t": particle(slots["t"], "을"), "pet": particle(slots["pet"], "이")}
    return Pair(rng.choice(frames).format(e=rng.choice(events).format(**slots)), rng.choice(replies))


def _facts_asked_back(rng: random.Random) -> list[Pair]:
    facts = _facts(rng)
    kinds = rng.sample(sorted(facts), 2 if rng.random() < 0.5 else 1)  # often a second fact between
    turns: list[str] = []
    pairs = []
    for kind in kinds:
        statements, _, _, acks = facts[kind]
        said, ack = rng.choice(statements), rng.choice(acks)
        pairs.append(Pair(said, ack, tuple(turns)))
        turns += [said, ack]
    _, questions, answers, _ = facts[rng.choice(kinds)]
    pairs.append(Pair(rng.choice(questions), rng.choice(answers), tuple(turns)))
    return pairs


def listening_pairs_ko(split: str) -> list[Pair]:
    """The Korean written conversations of one split."""
    rng = random.Random(SEEDS[split])
    pairs = []
    for _ in range(CONVERSATIONS[split]):
        pairs += [_news(rng)] if rng.random() < NEWS_SHARE else _facts_asked_back(rng)
    return pairs
