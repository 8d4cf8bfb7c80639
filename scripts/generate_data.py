"""Generate Accord's synthetic data set: applicants, a sanctions list, bureau files and bank ledgers.

Everything comes from one `random.Random(seed)` and a fixed reference date, so running the script twice
writes byte-identical files. The output is small enough to commit (`data/*.json`, well under 1 MB).

    python scripts/generate_data.py [--out DIR] [--seed N]

Hard cases are named by `scenario` and explained by `note`; the tool servers and agents never read those
two fields, they exist so tests and humans know what each applicant is meant to exercise.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

SEED = 20261031
AS_OF = date(2026, 10, 31)
MONTHS_OF_HISTORY = 12
SANCTIONS_ENTRIES = 300
BASELINE_PROFILES = ("prime",) * 14 + ("near_prime",) * 10 + ("subprime",) * 6

Json = dict[str, Any]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# ----------------------------------------------------------------------------------------------------------
# Name pools. Sanctions pools and applicant pools are disjoint on purpose, so only the hand-written hard
# cases come close to a listed name.

ARABIC_FIRST = _words(
    "Abdullah Ahmed Mohammed Khalid Omar Yusuf Hamza Bilal Faisal Nasser Samir Walid Ziyad "
    "Ibrahim Hussein Mustafa Rami Jamal Anwar Marwan"
)
ARABIC_LAST = _words(
    "Al-Hashimi Al-Masri Haddad Khoury Nasrallah Al-Zahrani Qureshi Al-Baghdadi Saleh Mansour "
    "Darwish Al-Tikriti Hamdan Kassem Barakat Al-Shami Qasim Al-Jubouri"
)
RUSSIAN_FIRST = _words(
    "Aleksandr Dmitry Sergei Andrei Mikhail Nikolai Vladimir Yuri Igor Oleg Pavel Roman Anatoly Gennady Vadim"
)
RUSSIAN_PATRONYMIC = _words(
    "Aleksandrovich Dmitrievich Sergeyevich Andreyevich Mikhailovich Nikolayevich Vladimirovich "
    "Yuryevich Igorevich Olegovich Pavlovich"
)
RUSSIAN_LAST = _words(
    "Ivanov Smirnov Kuznetsov Popov Sokolov Lebedev Kozlov Novikov Morozov Volkov Solovyov "
    "Vasiliev Zaitsev Pavlov Semyonov Golubev Vinogradov Bogdanov Vorobyov Fyodorov Zhukov "
    "Kovalchuk Shevchenko"
)
PERSIAN_FIRST = _words("Ali Reza Hossein Mahmoud Javad Mehdi Hamid Saeed Majid Morteza Kazem Farhad")
PERSIAN_LAST = _words(
    "Rahimi Karimi Hosseini Moradi Jafari Ahmadi Rezaei Sadeghi Ghorbani Shirazi Tehrani Esfahani"
)
KOREAN_LAST = ("Kim", "Ri", "Pak", "Choe", "Jang", "Han")
KOREAN_GIVEN = ("Chol", "Song Il", "Yong Ho", "Myong Su", "Kwang Jin", "Jong Nam", "Hyok", "Un Chol")
LATIN_FIRST = _words("Carlos José Luis Jorge Rafael Miguel Alejandro Héctor Ramón Joaquín")
LATIN_LAST = _words("Hernández Guzmán Rodríguez Caro Zambada Quintero Salazar Carrillo Beltrán Ochoa")
TURKIC_FIRST = ("Mehmet", "Abdülkadir", "Yusuf", "Ömer", "Rüstem", "Nurlan", "Timur")
TURKIC_LAST = ("Yılmaz", "Öztürk", "Şahin", "Nazarbekov", "Tokayev", "Aliyev", "Kaya")  # noqa: RUF001

ENTITY_WORDS = _words(
    "Crescent Meridian Northstar Sevmor Baltic Caspian Golden Horizon Orient Eastline Sahara "
    "Levant Pacific Atlas Falcon Phoenix Silverline Amber Delta Pioneer"
)
ENTITY_TRADES = _words(
    "Maritime Trading Shipping Petroleum Logistics Metals Industrial Exchange Resources Aviation "
    "Capital Energy"
)
ENTITY_SUFFIXES = ("LLC", "Ltd", "FZE", "OOO", "JSC", "Co", "Holding", "SA de CV", "Group")

# Each region: name builder, nationalities, programs.
REGION_COUNTRIES = {
    "arabic": ("SY", "IQ", "LB", "YE", "AE", "JO"),
    "russian": ("RU", "UA", "BY", "CY"),
    "persian": ("IR", "AE"),
    "korean": ("KP",),
    "latin": ("MX", "CO", "VE"),
    "turkic": ("TR", "KZ", "AZ"),
}
REGION_PROGRAMS = {
    "arabic": ("SDGT", "SYRIA", "IRAQ2", "FTO"),
    "russian": ("UKRAINE-EO13660", "UKRAINE-EO13661", "UKRAINE-EO13662", "RUSSIA-EO14024", "CYBER2"),
    "persian": ("IRAN", "IRAN-EO13846", "IRGC", "NPWMD"),
    "korean": ("DPRK3", "DPRK4", "NPWMD"),
    "latin": ("SDNTK", "ILLICIT-DRUGS-EO14059", "VENEZUELA-EO13850"),
    "turkic": ("GLOMAG", "SDGT", "CYBER2"),
}
REGION_WEIGHTS = {"arabic": 26, "russian": 28, "persian": 14, "korean": 8, "latin": 14, "turkic": 10}

# Transliteration rewrites used to invent aliases the way list compilers do (several romanizations).
ALIAS_REWRITES: tuple[tuple[str, str], ...] = (
    ("Mohammed", "Muhammad"),
    ("Mohammed", "Mohamed"),
    ("Yusuf", "Youssef"),
    ("Yusuf", "Jusuf"),
    ("Omar", "Umar"),
    ("Hussein", "Husayn"),
    ("Qureshi", "Kureishi"),
    ("Qasim", "Kassim"),
    ("Kassem", "Qassem"),
    ("Khalid", "Khaled"),
    ("Ziyad", "Ziad"),
    ("Haddad", "Hadad"),
    ("Al-", "El-"),
    ("Al-", ""),
    ("Aleksandr", "Alexander"),
    ("Dmitry", "Dmitri"),
    ("Sergei", "Sergey"),
    ("Yuri", "Iouri"),
    ("Fyodorov", "Fedorov"),
    ("Solovyov", "Soloviev"),
    ("Vorobyov", "Worobjow"),
    ("Semyonov", "Semenov"),
    ("Zhukov", "Joukov"),
    ("Shevchenko", "Schewtschenko"),
    ("Kovalchuk", "Kowaltschuk"),
    ("ov", "off"),
    ("ev", "eff"),
    ("Hossein", "Hosein"),
    ("Mahmoud", "Mahmud"),
    ("Saeed", "Said"),
    ("Ghorbani", "Qorbani"),
    ("Choe", "Choi"),
    ("Ri ", "Lee "),
    ("Pak ", "Park "),
    ("Chol", "Cheol"),
    ("Mehmet", "Mehmed"),
    ("Rüstem", "Rustam"),
)

APPLICANT_FIRST = _words(
    "Oliver Amelia George Isla Harry Ava Jack Mia Charlie Grace Thomas Sophie James Emily William "
    "Lily Daniel Chloe Samuel Ella Priya Arjun Kwame Mei Lukas Zofia Mateo Ines Freya Callum "
    "Niamh Rhys"
)
APPLICANT_LAST = _words(
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Wright Walker Thompson White "
    "Hughes Edwards Green Hall Wood Harris Clarke Nowak Okafor Lewis Martin Murphy Kowalski Singh "
    "Fernandes O'Brien"
)
APPLICANT_COUNTRIES = ("GB",) * 8 + ("IE", "PL", "IN", "NG", "PT")

STREETS = (
    "High Street Station Road Church Lane Victoria Road Park Avenue Mill Lane Queen Street Kings Road "
    "Manor Way Elm Grove Orchard Close Riverside Walk Albert Terrace Cedar Drive Windsor Crescent"
)
STREET_NAMES = [" ".join(pair) for pair in zip(STREETS.split()[::2], STREETS.split()[1::2], strict=True)]
CITIES = (
    ("London", "E"),
    ("Manchester", "M"),
    ("Leeds", "LS"),
    ("Bristol", "BS"),
    ("Glasgow", "G"),
    ("Birmingham", "B"),
    ("Cardiff", "CF"),
    ("Edinburgh", "EH"),
    ("Nottingham", "NG"),
    ("Sheffield", "S"),
)
EMPLOYERS = (
    "Northbridge Logistics Ltd",
    "Harbour Health NHS Trust",
    "Kestrel Software Ltd",
    "Pennine Water plc",
    "Albion Retail Group",
    "Cityline Transport",
    "Greenfield Academy Trust",
    "Marlowe & Finch LLP",
    "Brightwell Engineering",
    "Oakridge Council",
)
GIG_PAYERS = ("RideGo Driver Payouts", "QuickDeliver Couriers", "TaskHive Freelance")
LANDLORDS = ("Hearth Lettings", "Keystone Property Mgmt", "Willow Homes Rentals")
LENDERS = ("Beacon Building Society", "Union Home Loans")
GROCERS = ("FreshMart", "ValueGrocer", "Corner Market", "Greenleaf Foods")
UTILITIES = ("CityPower Energy", "ClearStream Water", "Nimbus Mobile", "FibreLink Broadband")
TRANSPORT = ("MetroRail", "Fuelstop", "CityBus Pass")
DINING = ("Bean & Leaf Cafe", "Noodle Bar", "Pizza Roma", "Curry House")
SHOPPING = ("HomeGoods Store", "Marketplace Online", "StyleHub")
GAMBLING = ("Lucky Star Casino", "BetNow Sports", "SpinPalace Online")
CREDITORS = ("QuickCash Loans", "Apex Card Services")


# ----------------------------------------------------------------------------------------------------------
# Sanctions list.


def _birth_date(rng: random.Random, first_year: int, last_year: int) -> str:
    start = date(first_year, 1, 1)
    span = (date(last_year, 12, 31) - start).days
    return (start + timedelta(days=rng.randrange(span))).isoformat()


def _person_name(rng: random.Random, region: str) -> str:
    if region == "arabic":
        return f"{rng.choice(ARABIC_FIRST)} {rng.choice(ARABIC_FIRST)} {rng.choice(ARABIC_LAST)}"
    if region == "russian":
        return f"{rng.choice(RUSSIAN_FIRST)} {rng.choice(RUSSIAN_PATRONYMIC)} {rng.choice(RUSSIAN_LAST)}"
    if region == "persian":
        return f"{rng.choice(PERSIAN_FIRST)} {rng.choice(PERSIAN_LAST)}"
    if region == "korean":
        return f"{rng.choice(KOREAN_LAST)} {rng.choice(KOREAN_GIVEN)}"
    if region == "latin":
        return f"{rng.choice(LATIN_FIRST)} {rng.choice(LATIN_LAST)} {rng.choice(LATIN_LAST)}"
    return f"{rng.choice(TURKIC_FIRST)} {rng.choice(TURKIC_LAST)}"


def _aliases(rng: random.Random, name: str) -> list[str]:
    variants: list[str] = []
    for old, new in rng.sample(ALIAS_REWRITES, len(ALIAS_REWRITES)):
        if old in name and len(variants) < 3:
            variant = " ".join(name.replace(old, new).split())
            if variant != name and variant not in variants:
                variants.append(variant)
    parts = name.split()
    if len(parts) >= 3 and rng.random() < 0.5:
        variants.append(f"{parts[0]} {parts[-1]}")
    return variants


def _filler_person(rng: random.Random, entry_id: str, name: str, region: str) -> Json:
    dates = [_birth_date(rng, 1945, 1990)]
    if rng.random() < 0.2:
        dates.append(_birth_date(rng, 1945, 1990))
    if rng.random() < 0.15:
        dates = [dates[0][:4]]  # list compilers often know only the year
    countries = sorted(set(rng.sample(REGION_COUNTRIES[region], min(2, len(REGION_COUNTRIES[region])))))
    return {
        "entry_id": entry_id,
        "entry_type": "individual",
        "primary_name": name,
        "aliases": _aliases(rng, name),
        "birth_dates": sorted(dates),
        "countries": countries[: rng.randint(1, len(countries))],
        "programs": sorted(rng.sample(REGION_PROGRAMS[region], rng.randint(1, 2))),
        "listed": _day(rng, date(2008, 1, 1), AS_OF).isoformat(),
    }


def _filler_entity(rng: random.Random, entry_id: str, region: str) -> Json:
    core = f"{rng.choice(ENTITY_WORDS)} {rng.choice(ENTITY_TRADES)}"
    name = f"{core} {rng.choice(ENTITY_SUFFIXES)}"
    aliases = [core.upper()] if rng.random() < 0.5 else []
    return {
        "entry_id": entry_id,
        "entry_type": "entity",
        "primary_name": name,
        "aliases": aliases,
        "birth_dates": [],
        "countries": [rng.choice(REGION_COUNTRIES[region])],
        "programs": sorted(rng.sample(REGION_PROGRAMS[region], rng.randint(1, 2))),
        "listed": _day(rng, date(2008, 1, 1), AS_OF).isoformat(),
    }


# The hand-written entries the hard-case applicants are built against.
ANCHOR_ENTRIES: tuple[Json, ...] = (
    {
        "entry_type": "individual",
        "primary_name": "Tariq Hassan Al-Rashid",
        "aliases": ["Tariq Hasan Rashid", "Abu Hassan al-Rashidi"],
        "birth_dates": ["1971-04-12"],
        "countries": ["LB", "SY"],
        "programs": ["SDGT", "SYRIA"],
        "listed": "2015-06-02",
    },
    {
        "entry_type": "individual",
        "primary_name": "Yevgeny Mikhailovich Tchernyshov",
        "aliases": ["Evgenii Chernyshev", "Jewgeni Tschernyschow", "Eugène Tchernychev"],
        "birth_dates": ["1968-09-23"],
        "countries": ["CY", "RU"],
        "programs": ["RUSSIA-EO14024", "UKRAINE-EO13662"],
        "listed": "2022-03-11",
    },
    {
        "entry_type": "individual",
        "primary_name": "Muammar Abdulsalam Qaddafi",
        "aliases": ["Moammar Gadhafi", "Muamar Kaddafi", "Mouammar Al-Qadhafi"],
        "birth_dates": ["1964-01-19"],
        "countries": ["LY"],
        "programs": ["LIBYA3"],
        "listed": "2011-02-25",
    },
    {
        "entry_type": "individual",
        "primary_name": "Viktor Ivanovich Petrenkov",
        "aliases": ["Viktor Petrenkov", "Wiktor Pietrenkow"],
        "birth_dates": ["1962-02-17"],
        "countries": ["RU", "UA"],
        "programs": ["UKRAINE-EO13660"],
        "listed": "2014-03-20",
    },
)
RESERVED_TOKENS = {"rashid", "tchernyshov", "chernyshev", "qaddafi", "petrenkov", "petrenko"}


def build_sanctions(rng: random.Random) -> Json:
    entries: list[Json] = []
    seen: set[str] = set()
    for anchor in ANCHOR_ENTRIES:
        entries.append({"entry_id": f"SDN-{10001 + len(entries)}", **anchor})
        seen.add(anchor["primary_name"])
    regions = list(REGION_WEIGHTS)
    weights = [REGION_WEIGHTS[r] for r in regions]
    while len(entries) < SANCTIONS_ENTRIES:
        entry_id = f"SDN-{10001 + len(entries)}"
        region = rng.choices(regions, weights)[0]
        if rng.random() < 0.16:
            entry = _filler_entity(rng, entry_id, region)
        else:
            entry = _filler_person(rng, entry_id, _person_name(rng, region), region)
        tokens = {t.lower().strip("-") for t in entry["primary_name"].replace("-", " ").split()}
        if entry["primary_name"] in seen or tokens & RESERVED_TOKENS:
            continue
        seen.add(entry["primary_name"])
        entries.append(entry)
    return {"as_of": AS_OF.isoformat(), "source": "synthetic (Accord generate_data.py)", "entries": entries}


# ----------------------------------------------------------------------------------------------------------
# Applicants, their bureau files and ledgers.


@dataclass
class Profile:
    """What one applicant is meant to look like; the generators below turn it into records."""

    scenario: str
    note: str
    name: str | None = None
    birth_date: str | None = None
    country: str | None = None
    credit: str = "prime"  # prime | near_prime | subprime | strong | thin | distressed | absent
    spending: str = "steady"  # steady | overspend | gambling | volatile
    gambling_share: float = 0.0
    address_moved: bool = False
    opened: str | None = None


HARD_CASES: tuple[Profile, ...] = (
    Profile(
        "sanctions_exact_hit",
        "Name, birth date and nationality equal a listed SDGT entry (SDN-10001): screening must say hit.",
        name="Tariq Hassan Al-Rashid",
        birth_date="1971-04-12",
        country="LB",
    ),
    Profile(
        "sanctions_alias_hit",
        "A different romanization of a listed alias (SDN-10002, Evgenii Chernyshev / Jewgeni Tschernyschow); "
        "same birth date and country: a transliteration-insensitive screen must say hit.",
        name="Yevgeniy Chernyshev",
        birth_date="1968-09-23",
        country="CY",
    ),
    Profile(
        "sanctions_near_miss",
        "Name close to listed Viktor Petrenkov (SDN-10004) but different birth date and nationality: "
        "potential_match or clear, never hit. Credit and ledger are sound.",
        name="Viktor Petrenko",
        birth_date="1986-07-30",
        country="GB",
    ),
    Profile(
        "thin_file",
        "Recent arrival: one tradeline, 5-month-old credit file, account opened in spring 2026.",
        credit="thin",
        opened="2026-04-14",
    ),
    Profile(
        "address_conflict",
        "Bureau still reports the old address (reported 2025-02); the bank ledger has the new one, updated "
        "2026-08. The ledger is more recent and should win reconciliation.",
        address_moved=True,
    ),
    Profile(
        "gambling_heavy",
        "Decent bureau file, but about a third of monthly outflow goes to gambling merchants.",
        spending="gambling",
        gambling_share=0.34,
    ),
    Profile(
        "high_utilization_delinquent",
        "Cards near their limits (utilization above 0.9), several delinquencies in 24 months, many recent "
        "inquiries, outflow above inflow.",
        credit="distressed",
        spending="overspend",
    ),
    Profile(
        "strong_clean",
        "Long file, excellent score, low utilization, stable salary with a large surplus.",
        credit="strong",
    ),
    Profile(
        "bureau_unknown",
        "The bureau has no file for this applicant; the ledger is present and ordinary.",
        credit="absent",
    ),
    Profile(
        "volatile_income",
        "Gig-economy income from several payers that swings month to month; fair credit file.",
        credit="near_prime",
        spending="volatile",
    ),
)


def _postcode(rng: random.Random, area: str) -> str:
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return f"{area}{rng.randint(1, 20)} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"


def _address(rng: random.Random) -> Json:
    city, area = rng.choice(CITIES)
    return {
        "line1": f"{rng.randint(1, 240)} {rng.choice(STREET_NAMES)}",
        "city": city,
        "postcode": _postcode(rng, area),
        "country": "GB",
    }


def _day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


class CreditShape(NamedTuple):
    """Ranges a bureau file of one credit profile is drawn from."""

    score: tuple[int, int]
    tradelines: tuple[int, int]
    file_age_months: tuple[int, int]
    delinquencies_24m: tuple[int, int]
    utilization: tuple[float, float]
    inquiries_6m: tuple[int, int]


CREDIT_SHAPES = {
    "strong": CreditShape((790, 835), (9, 15), (150, 260), (0, 0), (0.03, 0.12), (0, 1)),
    "prime": CreditShape((700, 780), (4, 11), (48, 200), (0, 0), (0.08, 0.35), (0, 2)),
    "near_prime": CreditShape((620, 690), (3, 8), (24, 120), (0, 1), (0.35, 0.6), (1, 3)),
    "subprime": CreditShape((540, 600), (2, 7), (18, 100), (2, 4), (0.7, 0.88), (3, 6)),
    "distressed": CreditShape((505, 545), (5, 9), (60, 140), (4, 6), (0.91, 0.98), (6, 9)),
    "thin": CreditShape((610, 650), (1, 1), (4, 6), (0, 0), (0.2, 0.4), (1, 2)),
}
# Net monthly salary by credit profile, and monthly spending as a share of it by spending habit.
SALARY_BANDS = {
    "strong": (5200, 7800),
    "prime": (2600, 4600),
    "near_prime": (2100, 3200),
    "subprime": (1700, 2400),
    "distressed": (1900, 2500),
    "thin": (2200, 2900),
    "absent": (2300, 3300),
}
SPEND_RATIOS = {
    "steady": (0.7, 0.88),
    "gambling": (0.95, 1.02),
    "overspend": (1.08, 1.2),
    "volatile": (0.8, 0.95),
}
SUBPRIME_SPEND_RATIO = (0.97, 1.06)


def _credit_file(
    rng: random.Random, applicant_id: str, profile: Profile, address: Json, reported: str
) -> Json:
    shape = CREDIT_SHAPES[profile.credit]
    return {
        "applicant_id": applicant_id,
        "score": rng.randint(*shape.score),
        "tradelines": rng.randint(*shape.tradelines),
        "file_age_months": rng.randint(*shape.file_age_months),
        "delinquencies_24m": rng.randint(*shape.delinquencies_24m),
        "utilization": round(rng.uniform(*shape.utilization), 2),
        "inquiries_6m": rng.randint(*shape.inquiries_6m),
        "address": address,
        "address_reported": reported,
    }


def _month_starts(opened: date) -> list[date]:
    first = date(AS_OF.year - 1, AS_OF.month + 1, 1) if AS_OF.month < 12 else date(AS_OF.year, 1, 1)
    months: list[date] = []
    current = first
    while current <= AS_OF:
        if current >= date(opened.year, opened.month, 1):
            months.append(current)
        current = date(current.year + (current.month == 12), current.month % 12 + 1, 1)
    return months


def _month_end(start: date) -> date:
    following = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return min(following - timedelta(days=1), AS_OF)


@dataclass
class _Month:
    rng: random.Random
    start: date
    rows: list[Json]

    def add(self, counterparty: str, category: str, amount: float, day: int | None = None) -> None:
        end = _month_end(self.start)
        when = self.start.replace(day=min(day, end.day)) if day else _day(self.rng, self.start, end)
        self.rows.append(
            {
                "date": when.isoformat(),
                "counterparty": counterparty,
                "category": category,
                "amount": round(amount, 2),
            }
        )


def _income(rng: random.Random, month: _Month, profile: Profile, salary: float, employer: str) -> float:
    if profile.spending == "volatile":
        total = 0.0
        for payer in rng.sample(GIG_PAYERS, rng.randint(1, 3)):
            paid = salary * rng.uniform(0.15, 0.8)
            month.add(payer, "salary", paid)
            total += paid
        return total
    paid = salary * rng.uniform(0.98, 1.03)
    month.add(employer, "salary", paid, day=rng.randint(25, 28))
    return paid


def _spending(
    rng: random.Random, month: _Month, profile: Profile, budget: float, housing: tuple[str, str, float]
) -> None:
    landlord, housing_category, housing_cost = housing
    month.add(landlord, housing_category, -housing_cost, day=1)
    spent = housing_cost
    for utility in rng.sample(UTILITIES, 2):
        bill = rng.uniform(35, 120)
        month.add(utility, "utilities", -bill, day=rng.randint(3, 12))
        spent += bill
    if profile.spending == "gambling":
        # Sized so gambling is about `gambling_share` of everything paid out this month.
        stake_total = budget * profile.gambling_share
        stakes = rng.randint(4, 7)
        for _ in range(stakes):
            month.add(rng.choice(GAMBLING), "gambling", -stake_total / stakes * rng.uniform(0.7, 1.3))
        spent += stake_total
    if profile.spending == "overspend":
        for creditor in CREDITORS:
            repayment = rng.uniform(150, 320)
            month.add(creditor, "loan_repayment", -repayment)
            spent += repayment
    remaining = max(budget - spent, budget * 0.25)
    shares = (("groceries", GROCERS, 0.45, 3), ("transport", TRANSPORT, 0.15, 2), ("dining", DINING, 0.15, 1))
    for category, merchants, share, count in shares:
        for _ in range(count):
            month.add(rng.choice(merchants), category, -remaining * share / count * rng.uniform(0.7, 1.3))
    if rng.random() < 0.7:
        month.add(rng.choice(SHOPPING), "shopping", -remaining * 0.15 * rng.uniform(0.5, 1.5))
    if profile.spending == "steady" and rng.random() < 0.15:
        month.add(rng.choice(GAMBLING), "gambling", -rng.uniform(5, 25))  # an occasional small flutter


def _ledger(
    rng: random.Random, account_id: str, holder: str, profile: Profile, address: Json, updated: str
) -> Json:
    opened = (
        date.fromisoformat(profile.opened)
        if profile.opened
        else _day(rng, date(2008, 1, 1), date(2024, 6, 30))
    )
    salary = round(rng.uniform(*SALARY_BANDS[profile.credit]), -1)
    ratio = SUBPRIME_SPEND_RATIO if profile.credit == "subprime" else SPEND_RATIOS[profile.spending]
    budget = salary * rng.uniform(*ratio)
    housing = (rng.choice(LANDLORDS), "rent", salary * rng.uniform(0.28, 0.36))
    if profile.credit == "strong":
        housing = (rng.choice(LENDERS), "mortgage", salary * rng.uniform(0.18, 0.25))
    employer = rng.choice(EMPLOYERS)
    rows: list[Json] = []
    for start in _month_starts(opened):
        month = _Month(rng, start, rows)
        _income(rng, month, profile, salary, employer)
        _spending(rng, month, profile, budget, housing)
        if rng.random() < 0.3:
            month.add(f"Transfer to {rng.choice(APPLICANT_FIRST)}", "transfer", -rng.uniform(20, 200))
        if rng.random() < 0.2:
            month.add(f"Transfer from {rng.choice(APPLICANT_FIRST)}", "transfer", rng.uniform(20, 150))
    rows.sort(key=lambda row: (row["date"], row["counterparty"], row["amount"]))
    return {
        "account_id": account_id,
        "holder_name": holder,
        "opened": opened.isoformat(),
        "address": address,
        "address_updated": updated,
        "transactions": rows,
    }


def _requested_amount(rng: random.Random, profile: Profile) -> int:
    base = {"strong": (15000, 40000), "thin": (3000, 8000), "distressed": (8000, 15000)}
    low, high = base.get(profile.credit, (2000, 20000))
    return round(rng.randint(low, high), -2)


def _applicant_identity(rng: random.Random, taken: set[str]) -> tuple[str, str, str]:
    while True:
        name = f"{rng.choice(APPLICANT_FIRST)} {rng.choice(APPLICANT_LAST)}"
        if name not in taken:
            taken.add(name)
            return name, _birth_date(rng, 1958, 2003), rng.choice(APPLICANT_COUNTRIES)


def _baselines(rng: random.Random) -> list[Profile]:
    notes = {
        "prime": "Ordinary prime applicant: good score, low utilization, steady salary and surplus.",
        "near_prime": "Ordinary near-prime applicant: fair score, moderate utilization, thin monthly margin.",
        "subprime": "Ordinary subprime applicant: low score, recent delinquencies, spends what it earns.",
    }
    profiles = list(BASELINE_PROFILES)
    rng.shuffle(profiles)
    return [Profile(f"baseline_{kind}", notes[kind], credit=kind) for kind in profiles]


def build_people(rng: random.Random) -> tuple[list[Json], list[Json], list[Json]]:
    applicants: list[Json] = []
    files: list[Json] = []
    accounts: list[Json] = []
    taken: set[str] = set()
    for number, profile in enumerate(HARD_CASES + tuple(_baselines(rng)), start=1):
        applicant_id, account_id = f"APP-{number:04d}", f"ACC-{100000 + number * 7:06d}"
        name, birth_date, country = _applicant_identity(rng, taken)
        name, birth_date = profile.name or name, profile.birth_date or birth_date
        country = profile.country or country
        home = _address(rng)
        moved_from = _address(rng) if profile.address_moved else home
        reported = "2025-02-14" if profile.address_moved else _day(rng, date(2024, 1, 1), AS_OF).isoformat()
        updated = (
            "2026-08-20"
            if profile.address_moved
            else _day(rng, date(2019, 1, 1), date(2024, 1, 1)).isoformat()
        )
        applicants.append(
            {
                "applicant_id": applicant_id,
                "account_id": account_id,
                "name": name,
                "birth_date": birth_date,
                "country": country,
                "requested_amount": _requested_amount(rng, profile),
                "scenario": profile.scenario,
                "note": profile.note,
            }
        )
        if profile.credit != "absent":
            files.append(_credit_file(rng, applicant_id, profile, moved_from, reported))
        accounts.append(_ledger(rng, account_id, name, profile, home, updated))
    return applicants, files, accounts


# ----------------------------------------------------------------------------------------------------------
# Output: stable, diff-friendly JSON.


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _compact(value: Any) -> bool:
    """Flat records (a transaction, an address) and scalar lists fit on one line."""
    if isinstance(value, dict):
        return all(_is_scalar(v) for v in value.values())
    if isinstance(value, list):
        return all(_is_scalar(v) for v in value)
    return True


def render_json(value: Any, depth: int = 0) -> str:
    """Sorted keys, two-space indent, one line per flat record: byte-stable and readable in diffs."""
    if _compact(value):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    inner, outer = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {render_json(value[k], depth + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + f"\n{outer}}}"
    items = [f"{inner}{render_json(item, depth + 1)}" for item in value]
    return "[\n" + ",\n".join(items) + f"\n{outer}]"


def generate(seed: int = SEED) -> dict[str, Any]:
    """All four data files, by file name."""
    rng = random.Random(seed)
    sanctions = build_sanctions(rng)
    applicants, files, accounts = build_people(rng)
    meta = {"as_of": AS_OF.isoformat(), "seed": seed}
    return {
        "applicants.json": applicants,
        "sanctions.json": sanctions,
        "bureau.json": {**meta, "files": files},
        "ledger.json": {**meta, "accounts": accounts},
    }


def write(out: Path, seed: int = SEED) -> list[Path]:
    """Write every data file under `out` (created if missing); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in generate(seed).items():
        path = out / name
        path.write_text(render_json(content) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for path in write(args.out, args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
