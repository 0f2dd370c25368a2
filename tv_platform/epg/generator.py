"""A synthetic electronic programme guide: a pure function of (day, seed, channels), like the simulator.

Each channel gets a *profile* from its name (news, sport, kids, music, film, series, documentary, shopping, faith,
general) and the profile's *template* for the day's class (weekday Mon–Fri, Saturday, Sunday): a list of slots
``HH:MM kind genre R|-`` covering 00:00–24:00. ``R`` slots are recurring strands: the strand in a slot is drawn from
``(seed, channel, day class)`` only — never the date — so the same series airs in the same slot every weekday and its
episode number advances by one per airing. Other slots (films, news bulletins, sport events) draw their titles from
``(seed, date ordinal, channel)``. All slot starts of a channel (but 00:00) are shifted by one channel constant
(−10…+10 min; news channels 0), so channels do not all switch at the same instant.

Every day's guide covers [D 00:00, D+1 00:00) exactly, per channel, with no gap and no overlap (the last programme
ends at midnight; nothing straddles it). Films on general channels air in the evening (22:00 on weekdays; midday
and late evening at the weekend); film channels show films all day.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pandas as pd

from tv_platform.epg.guide import GUIDE_COLUMNS, as_date, programme_id, typed

EPG_TAG = 0x4550_4721  # stream tag of the guide's draws ("EPG!"), next to the simulator's tags
EPOCH = date(2020, 1, 6)  # a Monday: episode numbers count airings since then

# ---- channel profiles -------------------------------------------------------------------------------------------
PROFILE_PATTERNS: list[tuple[str, str]] = [
    ("documentary", r"Doc"),
    ("news", r"Россия 24|РБК|Мир 24|Russia Today|Беларусь 24|Волгоград 24|Кубань 24|Астрахань 24|360|Радио Вести"),
    ("sport", r"МАТЧ|Футбол|Хоккей|Спортивный|Russian Extreme|WFC|Живи активно"),
    ("kids", r"Карусель|Мульт HD|Чижик|сказк|Рыжий|О!2|^Мама$|Уникум|Солнце"),
    ("music", r"Мультимузыка|^МУЗ|RU TV|BRIDGE|Europa Plus|ТНТ Music|МТВ|народной музыки|Радио|Маяк"),
    ("shopping", r"Shopping|Leomax|Ювелирочка"),
    ("faith", r"Спас|Союз|Три Ангела"),
    ("series", r"Русский роман|Русский бестселлер|Русский детектив|Сериал|Star Family|Дорама|Сарафан|НТВ-Хит|"
               r"НТВ-Право|Тайна"),
    ("film", r"Кино|кино|Cinema|Блокбастер|Иллюзион|иллюзион|Кинопоказ|Мосфильм|Комедия|Bollywood|Scream|TV XXI|"
             r"Приключения|Bolt|Старт|Black|Ретро|Арсенал|Еврокино"),
    ("documentary", r"История|Планета|Наука|Загородный|Усадьба|ZOO|Zоопарк|Телепутешествия|Рыбал|Рыболов|Охот|"
                    r"Рыбалк|рыбалк|животные|Космический|Просвещение|Театр|RTG|Т24|Вопросы и ответы|Психология|Здоровое|Россия К|"
                    r"День Победы|Нано|Калейдоскоп|Luxury|Стиль|Тонус"),
]
PROFILES = ("general", "news", "sport", "kids", "music", "shopping", "faith", "series", "film", "documentary")


def channel_profile(name: str) -> str:
    for profile, pattern in PROFILE_PATTERNS:
        if re.search(pattern, name or ""):
            return profile
    return "general"


# ---- templates: "HH:MM kind genre R|-" ---------------------------------------------------------------------------
def _slots(text: str) -> list[tuple[int, str, str, bool]]:
    out = []
    for item in text.split("|"):
        hhmm, kind, genre, rec = item.split()
        h, m = hhmm.split(":")
        out.append((int(h) * 60 + int(m), kind, genre, rec == "R"))
    return out


def _hourly(kind: str, genres: list[str], step: int = 60, recurring: bool = True) -> list[tuple[int, str, str, bool]]:
    return [(m, kind, genres[i % len(genres)], recurring) for i, m in enumerate(range(0, 1440, step))]


def _news_day(weekend: bool) -> list[tuple[int, str, str, bool]]:
    half = ["business", "interview", "analytics", "weather"] if not weekend else ["documentary", "interview",
                                                                                  "analytics", "travel"]
    out = []
    for h in range(24):
        out.append((h * 60, "news", "news", False))
        g = half[h % 4]
        out.append((h * 60 + 30, "documentary" if g == "documentary" else "show", g, True))
    return out


TEMPLATES: dict[str, tuple[list, list, list]] = {  # profile -> (weekday, saturday, sunday)
    "general": (
        _slots("00:00 series drama R|01:00 show talk R|02:00 documentary history R|03:00 series detective R|"
               "05:00 news news -|06:00 show morning R|09:00 news news -|09:30 show talk R|11:00 series melodrama R|"
               "13:00 news news -|13:30 series detective R|15:00 show talk R|17:00 news news -|17:30 series drama R|"
               "19:00 show game R|20:00 news news -|21:00 series drama R|22:00 film * -"),
        _slots("00:00 film * -|02:00 documentary nature R|04:00 show music R|06:00 kids animation R|"
               "08:00 show cooking R|10:00 news news -|10:20 show travel R|12:00 film * -|14:00 series drama R|"
               "18:00 show entertainment R|20:00 news news -|21:30 show entertainment R|22:30 film * -"),
        _slots("00:00 film * -|02:00 documentary history R|04:00 show music R|06:00 kids animation R|"
               "08:00 show morning R|10:00 news news -|10:20 show cooking R|12:00 film * -|14:00 series melodrama R|"
               "18:00 show game R|20:00 news news -|21:30 show talk R|22:30 film * -"),
    ),
    "news": (_news_day(False), _news_day(True), _news_day(True)),
    "sport": (
        _slots("00:00 sport replay -|02:00 documentary sport R|03:00 sport replay -|06:00 news sport -|"
               "06:30 show sport R|08:00 sport replay -|11:00 news sport -|11:30 sport replay -|14:00 show sport R|"
               "15:00 sport live -|17:00 news sport -|17:30 show sport R|19:00 sport live -|21:30 show sport R|"
               "22:30 sport replay -"),
        _slots("00:00 sport replay -|03:00 documentary sport R|04:00 sport replay -|08:00 news sport -|"
               "08:30 show sport R|10:00 sport live -|12:30 sport live -|15:00 sport live -|17:30 sport live -|"
               "20:00 sport live -|22:30 show sport R"),
        _slots("00:00 sport replay -|03:00 documentary sport R|04:00 sport replay -|08:00 news sport -|"
               "08:30 show sport R|10:00 sport live -|12:30 sport live -|15:00 sport live -|17:30 sport live -|"
               "20:00 sport live -|22:30 show sport R"),
    ),
    "kids": (_hourly("kids", ["animation"], 30),) * 3,
    "music": (_hourly("music", ["pop", "hits", "rock", "folk", "concert"]),) * 3,
    "shopping": (_hourly("show", ["shopping"]),) * 3,
    "faith": (_hourly("documentary", ["religion", "religion", "history"]),) * 3,
    "series": (_hourly("series", ["detective", "melodrama", "drama", "crime"]),) * 3,
    "film": ([(m, "film", "*", False) for m in range(0, 1380, 110)],) * 3,  # 00:00 … 22:00 (2 h)
    "documentary": (_hourly("documentary", ["nature", "history", "science", "travel", "hobby"]),) * 3,
}

# ---- name pools -------------------------------------------------------------------------------------------------
SERIES_A = ["Тайны", "Тени", "След", "Закон", "Улицы", "Сердце", "Дороги", "Город", "Огни", "Берег", "Право", "Дом",
            "Время", "Линия", "Код", "Ключи", "Песни", "Сёстры", "Пути", "Стражи"]
SERIES_B = ["прошлого", "следствия", "большого города", "на Неве", "надежды", "любви", "тайги", "судьбы", "чести",
            "Петербурга", "Москвы", "океана", "правды", "севера", "ветров", "рассвета", "реки", "памяти"]
SHOWS = {
    "talk": ["Время говорить", "Своя правда", "Разговор по существу", "Открытый эфир", "Мнения", "Прямой разговор"],
    "morning": ["Утро начинается", "Доброе утро, страна", "Утренний кофе", "Новое утро"],
    "game": ["Большая игра", "Поле решений", "Кто быстрее", "Сто к одному вопросу", "Умники"],
    "cooking": ["Кухня вместе", "Обед за полчаса", "Сладкая жизнь", "Вкусно по-домашнему"],
    "travel": ["Вокруг света за выходные", "Дорога домой", "Города России", "На машине по стране"],
    "entertainment": ["Вечер смеха", "Звёзды сошлись", "Танцы без правил", "Голос улиц", "Камеди вечер"],
    "music": ["Песня года", "Старые песни", "Концерт выходного дня"],
    "interview": ["Интервью дня", "Лицом к лицу", "Гость студии"],
    "business": ["Экономика", "Деловые новости", "Рынки", "Курс дня"],
    "analytics": ["Итоги часа", "Мир сегодня", "Главная тема", "Факты"],
    "weather": ["Погода и спорт", "Прогноз на неделю", "Погода"],
    "sport": ["Все на спорт!", "Спортивный вечер", "Футбольный клуб", "После матча", "Тренерский штаб"],
    "shopping": ["Магазин на диване", "Лучшие предложения", "Ювелирный час", "Товары для дома"],
}
DOCS = {
    "nature": ["Дикая Россия", "Тайны природы", "Люди и звери", "Планета океанов", "Заповедники"],
    "history": ["Великие империи", "Война и мир: хроника", "Загадки истории", "Города-герои", "Династии"],
    "science": ["Загадки космоса", "Как это устроено", "Наука будущего", "Мозг и разум"],
    "travel": ["Города мира", "Дорогами Азии", "Острова", "Вокруг Байкала"],
    "hobby": ["Рыбалка с профессионалом", "Охотничьи истории", "Дачные секреты", "Секреты мастеров"],
    "religion": ["Слово пастыря", "Святыни России", "Монастыри", "Вечерняя молитва"],
    "sport": ["Легенды спорта", "Большой хоккей: история", "Футбольные династии"],
    "documentary": ["Документальный цикл", "Страна и люди", "Свидетели"],
}
KIDS = ["Смешарики", "Фиксики", "Маша и Медведь", "Лунтик", "Барбоскины", "Три кота", "Малышарики", "Ми-ми-мишки",
        "Царевны", "Буба", "Оранжевая корова", "Тима и Тома", "Бумажки", "Ниндзяго", "Пин-код", "Котёнок Гав"]
MUSIC = ["Хит-парад", "Музыкальное утро", "Клипы нон-стоп", "Концерт", "Золотые хиты", "Дискотека 90-х",
         "Русский чарт", "Рок-час", "Народные песни", "Ночной эфир"]
NEWS = ["Новости", "Вести", "Сегодня", "События", "Время"]
FILM_A = ["Последний", "Тихий", "Северный", "Большой", "Чужой", "Белый", "Золотой", "Ночной", "Дальний", "Красный",
          "Старый", "Новый", "Долгий", "Третий", "Случайный"]
FILM_B = ["рубеж", "берег", "поезд", "город", "курьер", "ветер", "перевал", "звонок", "свидетель", "маршрут", "сезон",
          "выстрел", "билет", "остров", "дом"]
FILM_GENRES = ["драма", "комедия", "боевик", "детектив", "мелодрама", "триллер", "фантастика", "приключения"]
FILM_HINTS = [("Комедия", ["комедия"]), ("Scream", ["ужасы", "триллер"]), ("Bollywood", ["мелодрама", "драма"]),
              ("Мосфильм|Советское|Ретро", ["советское кино"]), ("Bolt|Арсенал|Блокбастер", ["боевик", "фантастика"]),
              ("Приключения", ["приключения"])]
SPORTS = [("football", "Футбол", "Чемпионат России", ["Спартак", "Зенит", "ЦСКА", "Локомотив", "Динамо", "Краснодар",
                                                     "Ротор", "Ростов"]),
          ("hockey", "Хоккей", "КХЛ", ["СКА", "ЦСКА", "Ак Барс", "Металлург", "Авангард", "Динамо"]),
          ("basketball", "Баскетбол", "Единая лига", ["УНИКС", "Зенит", "ЦСКА", "Локомотив-Кубань"]),
          ("martial", "Смешанные единоборства", "Турнир", ["боец А", "боец Б", "боец В", "боец Г"])]
SERIES_GENRE_RU = {"drama": "драма", "detective": "детектив", "melodrama": "мелодрама", "crime": "криминал"}


def _rng(*keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in keys])))


def _day_class(d: date) -> int:
    return 0 if d.weekday() < 5 else d.weekday() - 4  # 0 weekday, 1 Saturday, 2 Sunday


def _airings(d: date, cls: int) -> int:
    """How many days of class ``cls`` there are from EPOCH to d inclusive (the episode counter)."""
    if cls == 0:
        return int(np.busday_count(EPOCH, d + timedelta(days=1)))
    return (d - EPOCH).days // 7 + 1


def _strand(kind: str, genre: str, series_names: list[str], k: int) -> str:
    if kind == "series":
        return series_names[k % len(series_names)]
    if kind == "kids":
        return KIDS[k % len(KIDS)]
    if kind == "music":
        return MUSIC[k % len(MUSIC)]
    if kind == "documentary":
        pool = DOCS.get(genre, DOCS["documentary"])
        return pool[k % len(pool)]
    pool = SHOWS.get(genre, SHOWS["talk"])
    return pool[k % len(pool)]


def _channel_rows(d: date, seed: int, channel_id: int, name: str) -> list[dict]:
    profile = channel_profile(name)
    cls = _day_class(d)
    slots = TEMPLATES[profile][cls]
    strand_rng = _rng(seed, EPG_TAG, 1, channel_id, cls)  # recurring strands: no date in the key
    shift = 0 if profile in ("news", "kids", "music") else int(_rng(seed, EPG_TAG, 2, channel_id).integers(-2, 3)) * 5
    series_names = [f"{SERIES_A[i // len(SERIES_B)]} {SERIES_B[i % len(SERIES_B)]}"
                    for i in strand_rng.permutation(len(SERIES_A) * len(SERIES_B))[:64]]
    perm = strand_rng.permutation(1000)
    day_rng = _rng(seed, EPG_TAG, 3, d.toordinal(), channel_id)
    news_title = NEWS[channel_id % len(NEWS)] if profile == "general" else (
        "Новости экономики" if "РБК" in name else "Новости спорта" if profile == "sport" else "Новости")
    film_genres = next((g for pat, g in FILM_HINTS if re.search(pat, name)), FILM_GENRES)
    airings = _airings(d, cls)
    midnight = pd.Timestamp(d)
    starts = [0 if m == 0 else m + shift for m, *_ in slots]
    rows = []
    for i, ((_, kind, genre, recurring), start_m) in enumerate(zip(slots, starts)):
        end_m = starts[i + 1] if i + 1 < len(starts) else 1440
        series, episode = "", 0
        if recurring:
            series = _strand(kind, genre, series_names, int(perm[i]))
            episode = airings + int(perm[(i + 500) % 1000]) % 40
            title = f"{series}. Серия {episode}" if kind in ("series", "kids") else f"{series}. Выпуск {episode}"
            if kind == "series":
                genre = SERIES_GENRE_RU.get(genre, genre)
        elif kind == "film":
            title = f"{FILM_A[day_rng.integers(len(FILM_A))]} {FILM_B[day_rng.integers(len(FILM_B))]}".capitalize()
            genre = film_genres[day_rng.integers(len(film_genres))]
        elif kind == "sport":
            code, sport, league, teams = SPORTS[day_rng.integers(len(SPORTS))]
            a, b = day_rng.choice(len(teams), 2, replace=False)
            title = f"{sport}. {league}. {teams[a]} — {teams[b]}" + (". Прямая трансляция" if genre == "live" else "")
            genre = code
        else:  # news bulletins
            title = news_title
        start = midnight + pd.Timedelta(minutes=start_m)
        rows.append({"channel_id": channel_id, "programme_id": programme_id(channel_id, start), "title": title,
                     "kind": kind, "genre": genre, "series": series, "episode": episode, "start": start,
                     "end": midnight + pd.Timedelta(minutes=end_m)})
    return rows


def make_guide(day, seed: int = 42, channels: pd.DataFrame | None = None) -> pd.DataFrame:
    """The programme guide of ``day`` for ``channels`` (``channel_id``, ``channel_name``; default: the 148 channels of
    :func:`tv_platform.simulator.reference.load_channels`). Columns and dtypes: :data:`~tv_platform.epg.guide.
    GUIDE_COLUMNS`; sorted by channel and start. Same (day, seed, channels) → same frame."""
    if channels is None:
        from tv_platform.simulator.reference import load_channels

        channels = load_channels()
    d = as_date(day)
    rows: list[dict] = []
    for cid, name in zip(channels["channel_id"].astype(int), channels["channel_name"].astype(str)):
        rows.extend(_channel_rows(d, int(seed), int(cid), name))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in GUIDE_COLUMNS.items()})
    return typed(pd.DataFrame(rows))
