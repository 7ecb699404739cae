# coding=utf-8
"""Writes the shipped sample dump: a small, fictional Wikipedia XML export.

The dump is a real MediaWiki export (`<mediawiki><siteinfo><page>...`) whose
articles describe an invented country: its regions, rivers, towns, people and
species. Every fact comes from one generated world, so it is the same in
every article that mentions it (a town's river and region appear again in the
river's article, in the articles of people born there and in the articles of
species living nearby). Sentences are drawn from several phrasings in varying
order, so a small BERT learns the facts rather than one template.

The wikitext uses real markup for WikiExtractor to remove: infoboxes and other
templates, piped and plain links, bold and italics, <ref> tags (named and
self-closing), sections, lists, tables, comments, files, categories and HTML
entities. A few redirects and non-article pages are included; WikiExtractor
should drop them.

The output is deterministic (fixed seed, Python standard library only):

  python data/make_sample_dump.py
  python data/make_sample_dump.py --output /tmp/sample.xml.bz2 --seed 7
"""

import argparse
import bz2
import hashlib
import os
import random
import tempfile
from xml.sax import saxutils

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "sample", "enwiki-sample-pages-articles.xml.bz2")
DEFAULT_SEED = 20240501

COUNTRY = "Velmaria"
NUM_REGIONS = 12
NUM_RIVERS = 90
NUM_TOWNS = 450
NUM_PEOPLE = 1400
NUM_SPECIES = 1000

ONSETS = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "br", "dr", "gr",
          "kr", "st", "th", "sk", "h", "f", "g", "tr", "sl", "p", "w"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou"]
CODAS = ["", "", "", "n", "r", "l", "s", "m", "k", "nd", "rn", "st"]
TOWN_SUFFIXES = ["vik", "holm", "by", "stead", "wick", "ford", "dal", "mere",
                 "ton", "burg", "haven", "moor"]
REGION_SUFFIXES = ["land", "mark", "holt", "shire", "vale", "march"]
HILL_SUFFIXES = ["fell", "crag", "ridge", "top"]
FAMILY_SUFFIXES = ["sen", "ski", "ard", "ell", "ov", "ing", "son", "er"]
MALE_ENDINGS = ["o", "an", "ar", "is", "ek", "en"]
FEMALE_ENDINGS = ["a", "ia", "e", "ine", "ey", "elle"]

DIRECTIONS = ["north", "south", "east", "west", "north-east", "north-west",
              "south-east", "south-west", "centre"]
TERRAINS = [
    ("hills", "rolling hills"), ("marshes", "wide marshes"),
    ("plateau", "high plateaus"), ("coast", "rocky coasts"),
    ("forest", "dense pine forests"), ("plains", "open grass plains"),
    ("lakes", "many small lakes"), ("mountains", "steep mountains"),
]
CLIMATES = ["mild and wet", "cold and dry", "continental", "windy", "mild",
            "foggy"]
PRODUCTS = ["wool", "pottery", "glass", "cheese", "salt", "timber", "copper",
            "paper", "rope", "honey", "barley", "boats", "clocks", "linen",
            "cider", "leather", "iron", "bread"]
SAINTS = ["Brenna", "Aldric", "Oswin", "Mabel", "Tobias", "Hild", "Corwen",
          "Edda", "Lucan", "Marta", "Piran", "Ysolde", "Gerold", "Ines"]
SEAS = ["the Grey Sea", "the Amber Sea", "the Northern Bight", "the Bay of Sel"]
TRADES = ["weaver", "potter", "poet", "painter", "botanist", "engineer",
          "composer", "clockmaker", "shipwright", "cartographer", "physician",
          "glassblower", "architect", "astronomer", "historian", "sculptor",
          "brewer", "violinist", "naturalist", "mathematician", "baker",
          "blacksmith", "teacher", "judge"]
NATURALIST_TRADES = ("botanist", "naturalist")
WORK_WORDS = ["Ash", "Winter", "Lantern", "River", "Harvest", "Crow", "Salt",
              "Bridge", "Orchard", "Storm", "Mill", "Bell", "Willow", "Stone",
              "Lark", "Ember", "Tide", "Meadow", "Frost", "Candle"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December"]
COLOURS = ["red", "blue", "green", "yellow", "grey", "brown", "black", "white",
           "orange", "purple", "golden", "silver"]
QUALIFIERS = ["lesser", "greater", "spotted", "striped", "crested",
              "long-tailed", "common", "dwarf", "marsh", "hill", "banded",
              "pale", "dusky", "little"]
STATUSES = ["common", "rare", "endangered", "vulnerable", "widespread",
            "near threatened"]
# kind -> (group, class word, diet choices or None for plants, body part)
KINDS = {
    "finch": ("bird", "bird", ["seeds", "insects", "berries"], "breast"),
    "heron": ("bird", "bird", ["small fish", "frogs", "insects"], "crest"),
    "warbler": ("bird", "bird", ["insects", "spiders", "berries"], "throat"),
    "owl": ("bird", "bird", ["mice", "voles", "beetles"], "face"),
    "kingfisher": ("bird", "bird", ["small fish", "water insects"], "back"),
    "trout": ("fish", "fish", ["insects", "snails", "small fish"], "belly"),
    "perch": ("fish", "fish", ["worms", "small fish", "shrimp"], "fins"),
    "minnow": ("fish", "fish", ["algae", "water insects", "plankton"], "side"),
    "eel": ("fish", "fish", ["worms", "snails", "small fish"], "back"),
    "beetle": ("insect", "beetle", ["leaves", "rotting wood", "pollen"],
               "shell"),
    "moth": ("insect", "moth", ["nectar", "leaves"], "wings"),
    "dragonfly": ("insect", "insect", ["midges", "mosquitoes", "flies"],
                  "wings"),
    "frog": ("amphibian", "frog", ["insects", "worms", "snails"], "skin"),
    "newt": ("amphibian", "amphibian", ["worms", "insect larvae", "snails"],
             "belly"),
    "fern": ("plant", "fern", None, "fronds"),
    "orchid": ("plant", "flowering plant", None, "flowers"),
    "lily": ("plant", "flowering plant", None, "flowers"),
    "moss": ("plant", "moss", None, "leaves"),
    "willow": ("plant", "tree", None, "catkins"),
}
SOILS = ["sandy", "wet", "chalky", "peaty", "stony", "clay"]
GENUS_ENDINGS = ["us", "a", "ia", "ella", "ops"]
USERNAMES = ["Tolmarsen", "Quillwright", "Brannoch", "Eddastone", "Velm Editor",
             "Harrowgate", "Sloane K"]


def make_name(rng, syllables):
  """Returns a capitalised name made of `syllables` random syllables."""
  parts = []
  for _ in range(syllables):
    parts.append(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS))
  return "".join(parts).capitalize()


class NamePool(object):
  """Hands out names that are unique across the whole world."""

  def __init__(self, rng):
    self.rng = rng
    self.used = set()

  def take(self, make):
    """Calls make(rng) until it returns an unused, readable name."""
    while True:
      name = make(self.rng)
      if name.lower() in self.used or len(name) > 14 or len(name) < 4:
        continue
      self.used.add(name.lower())
      return name


# ------------------------------------------------------------------------------
# The world: plain dicts with every fact an article may state.
# ------------------------------------------------------------------------------


def build_world(rng):
  """Creates regions, rivers, towns, people and species with linked facts."""
  names = NamePool(rng)
  regions = []
  directions = list(DIRECTIONS) + ["north", "south", "east"]
  for i in range(NUM_REGIONS):
    terrain = TERRAINS[i % len(TERRAINS)]
    regions.append({
        "name": names.take(lambda r: make_name(r, 2) + r.choice(
            REGION_SUFFIXES)),
        "direction": directions[i],
        "terrain": terrain[0], "terrain_phrase": terrain[1],
        "climate": rng.choice(CLIMATES),
        "hills": names.take(lambda r: make_name(r, 1) + r.choice(
            HILL_SUFFIXES)),
        "rivers": [], "towns": [],
    })
  for i, region in enumerate(regions):
    region["neighbours"] = [regions[(i + 1) % NUM_REGIONS],
                            regions[(i - 1) % NUM_REGIONS]]

  rivers = []
  lakes = []
  for i in range(NUM_RIVERS):
    region = regions[i % NUM_REGIONS]
    second = region["neighbours"][0] if rng.random() < 0.35 else None
    river = {
        "name": names.take(lambda r: make_name(r, 2)[:8]),
        "region": region, "second_region": second,
        "length": round(rng.uniform(12, 260), 1),
        "hills": region["hills"], "towns": [], "species": [],
        "tributaries": [],
    }
    if i >= NUM_REGIONS * 2 and rng.random() < 0.4:
      # A tributary of an earlier river from the same region.
      same = [r for r in rivers if r["region"] is region]
      river["mouth_river"] = rng.choice(same)
      river["mouth_river"]["tributaries"].append(river)
    elif rng.random() < 0.4:
      lake = "Lake " + names.take(lambda r: make_name(r, 2)[:7])
      lakes.append(lake)
      river["mouth_lake"] = lake
    else:
      river["mouth_sea"] = rng.choice(SEAS)
    rivers.append(river)
    region["rivers"].append(river)
    if second:
      second["rivers"].append(river)

  towns = []
  for i in range(NUM_TOWNS):
    river = rivers[i % NUM_RIVERS] if i < NUM_RIVERS else rng.choice(rivers)
    region = river["region"]
    if river["second_region"] and rng.random() < 0.4:
      region = river["second_region"]
    founded = rng.randint(880, 1790)
    town = {
        "name": names.take(lambda r: make_name(r, 1 + (r.random() < 0.5)) +
                           r.choice(TOWN_SUFFIXES)),
        "river": river, "region": region, "founded": founded,
        "population": int(rng.lognormvariate(8.6, 1.0)) + 300,
        "census_year": rng.choice([1991, 2001, 2011, 2021]),
        "product": rng.choice(PRODUCTS),
        "saint": rng.choice(SAINTS),
        "church_year": founded + rng.randint(10, 300),
        "bank": rng.choice(["left", "right"]),
        "area": round(rng.uniform(2, 90), 1),
        "elevation": rng.randint(5, 900),
        "people": [], "species": [],
    }
    towns.append(town)
    river["towns"].append(town)
    region["towns"].append(town)
  for region in regions:
    if not region["towns"]:
      # Every region needs a capital: move a town from the largest region.
      donor = max(regions, key=lambda r: len(r["towns"]))
      town = donor["towns"].pop()
      town["region"] = region
      region["towns"].append(town)
    region["capital"] = max(region["towns"], key=lambda t: t["population"])
    region["population"] = sum(t["population"] for t in region["towns"])
  for town in towns:
    others = [t for t in town["region"]["towns"] if t is not town]
    town["origin"] = rng.choice(others) if others else None
    town["distance"] = rng.randint(4, 140)
  # Twin towns are symmetric: pair towns off at random.
  shuffled = list(towns)
  rng.shuffle(shuffled)
  for a, b in zip(shuffled[0::2], shuffled[1::2]):
    if rng.random() < 0.5:
      year = rng.randint(1950, 2015)
      a["twin"], a["twin_year"] = b, year
      b["twin"], b["twin_year"] = a, year

  people = []
  first_male = [names.take(lambda r: make_name(r, 1) + r.choice(MALE_ENDINGS))
                for _ in range(70)]
  first_female = [names.take(lambda r: make_name(r, 1) + r.choice(
      FEMALE_ENDINGS)) for _ in range(70)]
  families = [names.take(lambda r: make_name(r, 1) + r.choice(FAMILY_SUFFIXES))
              for _ in range(260)]
  full_names = set()
  for i in range(NUM_PEOPLE):
    female = rng.random() < 0.45
    while True:
      first = rng.choice(first_female if female else first_male)
      family = rng.choice(families)
      if (first, family) not in full_names:
        full_names.add((first, family))
        break
    born = rng.randint(1650, 1960)
    died = born + rng.randint(35, 95)
    if died > 2023:
      died = None
    town = rng.choice(towns)
    person = {
        "first": first, "family": family, "name": first + " " + family,
        "female": female, "born": born, "died": died, "town": town,
        "trade": TRADES[i % len(TRADES)] if i < 200 else rng.choice(TRADES),
        "father_trade": rng.choice(TRADES),
        "death_town": town if rng.random() < 0.5 else rng.choice(towns),
        "work": "The %s %s" % (rng.choice(WORK_WORDS), rng.choice(WORK_WORDS)),
        "work_year": born + rng.randint(20, 34),
        "described": [],
    }
    people.append(person)
    town["people"].append(person)
  for person in people:
    older = [p for p in people if p["trade"] == person["trade"] and
             person["born"] - 60 < p["born"] < person["born"] - 15]
    has_mentor = older and rng.random() < 0.7
    person["mentor"] = rng.choice(older) if has_mentor else None

  naturalists = [p for p in people if p["trade"] in NATURALIST_TRADES]
  species = []
  common_names = set()
  kinds = sorted(KINDS)
  for i in range(NUM_SPECIES):
    kind = kinds[i % len(kinds)]
    river = rng.choice(rivers)
    while True:
      qualifier = rng.choice(QUALIFIERS)
      common = "%s %s %s" % (qualifier, river["name"], kind)
      if common not in common_names:
        common_names.add(common)
        break
    describer = rng.choice(naturalists)
    described_year = describer["born"] + rng.randint(22, 34)
    group, class_word, diets, part = KINDS[kind]
    genus = names.take(lambda r: make_name(r, 1 + (r.random() < 0.6)) +
                       r.choice(GENUS_ENDINGS))
    one = {
        "common": common[0].upper() + common[1:], "kind": kind,
        "group": group, "class_word": class_word, "part": part,
        "scientific": genus + " " + river["name"].lower() + "ensis",
        "river": river, "region": river["region"],
        "town": rng.choice(river["towns"]) if river["towns"] else None,
        "colour": rng.choice(COLOURS), "second_colour": rng.choice(COLOURS),
        "diet": rng.sample(diets, min(2, len(diets))) if diets else None,
        "soil": rng.choice(SOILS), "month": rng.choice(MONTHS[2:9]),
        "size": round(rng.uniform(0.5, 9.5) * (
            10 if group in ("bird", "fish") else 1), 1),
        "describer": describer, "described_year": described_year,
        "status": rng.choice(STATUSES),
    }
    species.append(one)
    river["species"].append(one)
    describer["described"].append(one)
    if one["town"]:
      one["town"]["species"].append(one)
  return {"regions": regions, "rivers": rivers, "towns": towns,
          "people": people, "species": species}


# ------------------------------------------------------------------------------
# Wikitext helpers.
# ------------------------------------------------------------------------------


def link(target, label=None):
  """Returns a wiki link, piped when the label differs from the target."""
  if label is None or label == target:
    return "[[%s]]" % target
  return "[[%s|%s]]" % (target, label)


def river_title(river):
  """Article title of a river."""
  return "%s (river)" % river["name"]


def river_link(river):
  """Link to a river labelled with its plain name."""
  return link(river_title(river), river["name"])


def species_title(one):
  """Article title of a species (sentence case, like Wikipedia)."""
  return one["common"]


def lower_first(text):
  """Lower-cases the first letter (for a species name inside a sentence)."""
  return text[0].lower() + text[1:]


def species_link(one):
  """Link to a species labelled in lower case, as inside a sentence."""
  return link(species_title(one), lower_first(one["common"]))


def join_words(items):
  """'a', 'a and b', 'a, b and c'."""
  items = list(items)
  if len(items) == 1:
    return items[0]
  return ", ".join(items[:-1]) + " and " + items[-1]


def years(person):
  """The (born–died) part of a person's lead, with an HTML entity."""
  if person["died"]:
    return "%d&ndash;%d" % (person["born"], person["died"])
  return "born %d" % person["born"]


def number(value):
  """Formats 12345 as 12,345."""
  return "{:,}".format(value)


def ordinal(value):
  """1 -> '1st', 12 -> '12th', 22 -> '22nd'."""
  if 10 <= value % 100 <= 20:
    return "%dth" % value
  return "%d%s" % (value, {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th"))


def pronoun(person, capital=True):
  """He/She (or he/she)."""
  word = "She" if person["female"] else "He"
  return word if capital else word.lower()


def possessive(person, capital=True):
  """His/Her (or his/her)."""
  word = "Her" if person["female"] else "His"
  return word if capital else word.lower()


def pick(rng, choices, **values):
  """Formats one randomly chosen phrasing with the given values."""
  return rng.choice(choices).format(**values)


def paragraph(rng, sentences, keep_first=True):
  """Joins sentences into one paragraph line, shuffling all but the first."""
  sentences = [s for s in sentences if s]
  head, rest = (sentences[:1], sentences[1:]) if keep_first else ([], sentences)
  rng.shuffle(rest)
  return " ".join(head + rest)


def citation(rng, title, year):
  """A <ref> with a cite template inside."""
  return ("<ref>{{cite book |last=%s |title=%s |publisher=Velmarian Press "
          "|year=%d |page=%d}}</ref>" % (
              rng.choice(["Harl", "Osk", "Brenn", "Tove"]), title, year,
              rng.randint(3, 400)))


# ------------------------------------------------------------------------------
# Articles.
# ------------------------------------------------------------------------------


def town_article(rng, town):
  """Wikitext of a town article."""
  river, region = town["river"], town["region"]
  capital = region["capital"]
  values = dict(
      town=town["name"], river=river["name"], river_link=river_link(river),
      region=region["name"], region_link=link(region["name"]),
      founded=town["founded"], pop=number(town["population"]),
      census=town["census_year"], product=town["product"],
      saint=town["saint"], church_year=town["church_year"],
      bank=town["bank"], area=town["area"], elevation=town["elevation"],
      dist=town["distance"], capital=capital["name"],
      capital_link=link(capital["name"]), country=COUNTRY)
  size = "small" if town["population"] < 5000 else (
      "large" if town["population"] > 40000 else "market")
  values["size"] = size
  lines = [
      "{{Short description|Town in %s, %s}}" % (region["name"], COUNTRY),
      "{{Use dmy dates|date=March 2021}}",
      "{{Infobox settlement",
      "| name = %s" % town["name"],
      "| settlement_type = Town",
      "| subdivision_name = %s" % link(COUNTRY),
      "| subdivision_name1 = %s" % link(region["name"]),
      "| established_date = %d" % town["founded"],
      "| population_total = %d" % town["population"],
      "| elevation_m = %d" % town["elevation"],
      "| area_total_km2 = %s" % town["area"],
      "| river = %s" % river_link(river),
      "}}",
  ]
  is_capital = capital is town
  lead = [pick(rng, [
      "'''{town}''' is a {size} town in {region_link}, {country}, on the "
      "{river_link}.",
      "'''{town}''' is a town in the region of {region_link}, situated on the "
      "{river_link}.",
      "'''{town}''' is a {size} town on the banks of the {river_link} in "
      "{region_link}.",
  ], **values)]
  if is_capital:
    lead.append(pick(rng, [
        "It is the capital and largest town of {region}.",
        "{town} is the capital of {region} and its largest town.",
    ], **values))
  else:
    lead.append(pick(rng, [
        "It lies approx. {dist}&nbsp;km from {capital_link}, the capital of "
        "{region}.",
        "The town is about {dist}&nbsp;km from {capital_link}, the regional "
        "capital.",
    ], **values))
  lead.append(pick(rng, [
      "In the census of {census} it had a population of {pop}."
      "<ref name=\"census{census}\">{{{{cite web |title=Census of {census} "
      "|publisher=Velmarian Statistics Office}}}}</ref>",
      "{town} has approx. {pop} inhabitants.<ref name=\"census{census}\"/>",
      "The population of {town} was {pop} in {census}.",
  ], **values))
  lead.append(pick(rng, [
      "The town is known for its {product}.",
      "{town} is known for its {product}.",
      "{town} has long been a centre of the {product} trade.",
  ], **values))

  history = [pick(rng, [
      "{town} was founded in {founded}.",
      "The town was founded in {founded}.",
      "According to local records, {town} dates from {founded}.",
      "{town} received its charter in {founded}.",
  ], **values) + citation(rng, "A History of " + region["name"],
                          rng.randint(1890, 2010))]
  if town["origin"]:
    history.append(pick(rng, [
        "Its first settlers came from {origin}.",
        "It was settled by families from {origin}.",
        "The first families in {town} came from nearby {origin}.",
    ], origin=link(town["origin"]["name"]), **values))
  history.append(pick(rng, [
      "The oldest building in {town} is St. {saint}'s Church, built in "
      "{church_year}.",
      "St. {saint}'s Church was built in {church_year} and is the oldest "
      "building in the town.",
      "The church of St. {saint} dates from {church_year}.",
  ], **values))
  history.append(pick(rng, [
      "In the {century} century the {product} trade made the town rich.",
      "Trade in {product} along the {river} brought the town wealth.",
      "Boats carried {product} from {town} down the {river}.",
  ], century=ordinal((town["founded"] + 60) // 100 + 1), **values))

  geography = [pick(rng, [
      "{town} lies on the {bank} bank of the {river_link}.",
      "The {river} flows through the centre of {town}.",
      "The town is built on the {bank} bank of the {river}.",
  ], **values)]
  geography.append(pick(rng, [
      "The municipality covers an area of {area}&nbsp;km² and the town "
      "centre stands at an elevation of {elevation}&nbsp;m.",
      "The town covers {area}&nbsp;km². Its centre is {elevation}&nbsp;m above "
      "sea level.",
      "It has an area of {area}&nbsp;km² and lies {elevation}&nbsp;m above "
      "sea level.",
  ], **values))
  geography.append(pick(rng, [
      "The land around {town} has {terrain}, typical of {region}.",
      "Like much of {region}, the area around the town has {terrain}.",
  ], terrain=region["terrain_phrase"], **values))
  if town["species"]:
    one = rng.choice(town["species"])
    geography.append(pick(rng, [
        "The {species} lives in the {river} near the town.",
        "The {species} can be seen along the river at {town}.",
    ], species=species_link(one), **values))

  sections = [
      "\n".join(lines),
      paragraph(rng, lead),
      "== History ==",
      paragraph(rng, history),
      "== Geography ==",
      "[[File:%s river view.jpg|thumb|The %s at %s]]" % (
          town["name"], river_link(river), town["name"]),
      paragraph(rng, geography, keep_first=False),
  ]
  if rng.random() < 0.3:
    sections.append(
        "{| class=\"wikitable\"\n|+ Population\n! Year !! Inhabitants\n"
        "|-\n| %d || %s\n|-\n| %d || %s\n|}" % (
            town["census_year"] - 10,
            number(int(town["population"] * 0.93)), town["census_year"],
            number(town["population"])))
  people = town["people"][:6]
  if people:
    named = ["the %s %s" % (p["trade"], link(p["name"])) for p in people[:3]]
    sections.append("== Notable people ==")
    sections.append(pick(rng, [
        "Notable people born in {town} include {named}.",
        "People from {town} include {named}.",
        "{town} is the birthplace of {named}.",
    ], named=join_words(named), **values))
    sections.append("\n".join(
        "* %s (%s), %s" % (link(p["name"]), years(p), p["trade"])
        for p in people))
  if "twin" in town:
    twin = town["twin"]
    sections.append("== Twin towns ==")
    sections.append(pick(rng, [
        "{town} is twinned with {twin} in {twin_region}.",
        "Since {year}, {town} has been twinned with {twin}.",
    ], twin=link(twin["name"]), twin_region=link(twin["region"]["name"]),
                         year=town["twin_year"], **values))
  sections += [
      "== References ==", "{{Reflist}}",
      "== External links ==",
      "* [http://www.%s.example.org/ Official website of %s]" % (
          town["name"].lower(), town["name"]),
      "{{%s-geo-stub}}" % COUNTRY,
      "[[Category:Towns in %s]]" % region["name"],
      "[[Category:Populated places on the %s]]" % river["name"],
  ]
  return "\n\n".join(sections)


def river_article(rng, river):
  """Wikitext of a river article."""
  region = river["region"]
  values = dict(river=river["name"], region=region["name"],
                region_link=link(region["name"]), length=river["length"],
                hills=river["hills"], country=COUNTRY)
  regions = [link(region["name"])]
  if river["second_region"]:
    regions.append(link(river["second_region"]["name"]))
  values["regions"] = join_words(regions)
  if "mouth_river" in river:
    mouth = river_link(river["mouth_river"])
    mouth_text = "the " + mouth
  elif "mouth_lake" in river:
    mouth_text = river["mouth_lake"]
  else:
    mouth_text = river["mouth_sea"]
  values["mouth"] = mouth_text
  lines = [
      "{{Infobox river",
      "| name = %s" % river["name"],
      "| length = {{convert|%s|km|mi|abbr=on}}" % river["length"],
      "| source1_location = %s Hills" % river["hills"],
      "| mouth = %s" % mouth_text,
      "| subdivision_name1 = %s" % values["regions"],
      "}}",
  ]
  lead = [pick(rng, [
      "The '''{river}''' is a river in {regions}, {country}.",
      "The '''{river}''' is a {length}&nbsp;km long river that flows through "
      "{regions}.",
      "The '''{river}''' is a river of {country} which flows through "
      "{regions}.",
  ], **values)]
  lead.append(pick(rng, [
      "It is {length}&nbsp;km long.",
      "Its total length is {length}&nbsp;km.",
      "The river is approx. {length}&nbsp;km long.",
  ], **values))
  course = [pick(rng, [
      "It rises in the {hills} Hills of {region}.",
      "The source of the {river} lies in the {hills} Hills.",
      "The {river} has its source in the {hills} Hills in {region_link}.",
  ], **values)]
  course.append(pick(rng, [
      "It flows into {mouth}.",
      "The {river} empties into {mouth}.",
      "It ends in {mouth}.",
  ], **values))
  if river["towns"]:
    names = [link(t["name"]) for t in river["towns"][:5]]
    course.append(pick(rng, [
        "Towns on the {river} include {towns}.",
        "The {river} passes through {towns}.",
        "Along its course lie the towns of {towns}.",
    ], towns=join_words(names), **values))
  if river["tributaries"]:
    tribs = join_words(["the " + river_link(t)
                        for t in river["tributaries"][:3]])
    course.append(pick(rng, [
        "Its tributaries include {tribs}.",
        "{Tribs} flow into the {river}.",
        "The {river} is joined by {tribs}.",
    ], tribs=tribs, Tribs="T" + tribs[1:], **values))
  sections = ["\n".join(lines), paragraph(rng, lead), "== Course ==",
              paragraph(rng, course)]
  if river["species"]:
    phrasings = [
        "The river is home to the {a}.",
        "The {a} lives in the {river}.",
        "Among the animals and plants of the {river} is the {a}.",
        "The {a} is found along its banks.",
        "The waters of the {river} are the habitat of the {a}.",
    ]
    chosen = rng.sample(phrasings, min(4, len(river["species"])))
    wildlife = [phrase.format(a=species_link(one), **values)
                for phrase, one in zip(chosen, river["species"])]
    sections += ["== Wildlife ==", paragraph(rng, wildlife, keep_first=False)]
  sections += ["== See also ==",
               "* [[List of rivers of %s]]" % COUNTRY,
               "== References ==", "{{Reflist}}",
               "[[Category:Rivers of %s]]" % region["name"]]
  return "\n\n".join(sections)


def region_article(rng, region):
  """Wikitext of a region article."""
  capital = region["capital"]
  values = dict(region=region["name"], country=COUNTRY,
                direction=region["direction"], capital=link(capital["name"]),
                terrain=region["terrain_phrase"], climate=region["climate"],
                pop=number(region["population"]),
                neighbours=join_words(link(n["name"])
                                      for n in region["neighbours"]),
                hills=region["hills"])
  lead = [pick(rng, [
      "'''{region}''' is a region in the {direction} of {country}.",
      "'''{region}''' is one of the regions of {country}, in the {direction} "
      "of the country.",
  ], **values)]
  lead.append(pick(rng, [
      "Its capital is {capital}.",
      "The capital of {region} is {capital}.",
      "The regional capital, {capital}, is also its largest town.",
  ], **values))
  lead.append(pick(rng, [
      "The region has a population of approx. {pop}.",
      "About {pop} people live in {region}.",
  ], **values))
  geography = [
      pick(rng, ["The landscape of {region} is one of {terrain}.",
                 "{region} is a land of {terrain}."], **values),

      pick(rng, ["The climate is {climate}.",
                 "{region} has a {climate} climate."], **values),
      pick(rng, ["It borders {neighbours}.",
                 "Its neighbours are {neighbours}."], **values),
      pick(rng, ["The highest ground is in the {hills} Hills.",
                 "The {hills} Hills rise in the region."], **values),
  ]
  rivers = [river_link(r) for r in region["rivers"][:6]]
  if rivers:
    geography.append("The main rivers are the %s." % join_words(rivers))
  towns = sorted(region["towns"], key=lambda t: -t["population"])[:8]
  sections = [
      "{{Infobox region\n| name = %s\n| capital = %s\n| population = %d\n}}" %
      (region["name"], capital["name"], region["population"]),
      paragraph(rng, lead), "== Geography ==",
      paragraph(rng, geography, keep_first=False), "== Towns ==",
      "The largest towns of %s are %s." % (
          region["name"], join_words(link(t["name"]) for t in towns)),
      "\n".join("* %s (%s)" % (link(t["name"]), number(t["population"]))
                for t in towns),
      "== References ==", "{{Reflist}}",
      "[[Category:Regions of %s]]" % COUNTRY,
  ]
  return "\n\n".join(sections)


def trade_sentences(rng, person, values):
  """Sentences about a person's work, consistent with the rest of the world."""
  trade = person["trade"]
  town = person["town"]
  he, his = values["he"], values["his"]
  work = "''%s''" % person["work"]
  sentences = []
  if person["described"]:
    one = person["described"][0]
    sentences.append(pick(rng, [
        "{he} first described the {a} in {year}.",
        "In {year} {he_l} described the {a}, which lives in the {home}.",
    ], a=species_link(one), year=one["described_year"],
                          home=river_link(one["river"]), **values))
  if trade in ("poet", "historian", "teacher", "judge"):
    sentences.append(pick(rng, [
        "{he} is best known for the book {work} ({year}).",
        "{his} best-known book is {work}, published in {year}.",
    ], work=work, year=person["work_year"], **values))
  elif trade in ("painter", "sculptor"):
    sentences.append(pick(rng, [
        "{his} work {work} ({year}) is kept in the museum of {town}.",
        "The museum of {town} holds {his_l} {work}, made in {year}.",
    ], work=work, year=person["work_year"], **values))
  elif trade in ("composer", "violinist"):
    sentences.append(pick(rng, [
        "{he} wrote {work} for the choir of St. {saint}'s Church in {town}.",
        "{his} piece {work} was first played at St. {saint}'s Church in "
        "{town}.",
    ], work=work, saint=town["saint"], **values))
  elif trade in ("engineer", "architect"):
    sentences.append(pick(rng, [
        "{he} built the stone bridge over the {river} at {town}.",
        "{his} best-known work is the bridge over the {river} in {town}, "
        "completed in {year}.",
    ], year=person["work_year"], **values))
  elif trade in ("weaver", "potter", "glassblower", "brewer", "baker",
                 "blacksmith", "clockmaker", "shipwright"):
    sentences.append(pick(rng, [
        "{he} ran a workshop in {town}, a town famous for its {product}.",
        "{his} workshop in {town} sold {product} along the {river}.",
    ], **values))
  else:
    sentences.append(pick(rng, [
        "{he} worked for many years in {town} and later in {death_town}.",
        "{his} studies made {his_l} name known across {country}.",
    ], **values))
  return sentences


def person_article(rng, person):
  """Wikitext of a biography."""
  town = person["town"]
  river, region = town["river"], town["region"]
  values = dict(
      name=person["name"], first=person["first"], family=person["family"],
      years=years(person), trade=person["trade"], town=town["name"],
      town_link=link(town["name"]), river=river["name"],
      river_link=river_link(river), region=region["name"],
      region_link=link(region["name"]), born=person["born"],
      died=person["died"], death_town=person["death_town"]["name"],
      death_town_link=link(person["death_town"]["name"]),
      he=pronoun(person), he_l=pronoun(person, False),
      his=possessive(person), his_l=possessive(person, False),
      father_trade=person["father_trade"], country=COUNTRY,
      product=town["product"])
  alive = person["died"] is None
  lead = [pick(rng, [
      "'''{name}''' ({years}) {was} a {trade} from {town_link}.",
      "'''{name}''' ({years}) {was} a {country}n {trade} born in {town_link}.",
      "'''{name}''' ({years}) {was} a {trade} from {town_link} in "
      "{region_link}.",
  ], was="is" if alive else "was", **values)]
  early = [pick(rng, [
      "{first} was born in {town} in {born}.",
      "{name} was born in {born} in {town}, a town on the {river_link}.",
      "{he} was born in {town} in {born}.",
  ], **values)]
  early.append(pick(rng, [
      "{town} is a town on the {river} in {region}.",
      "{town} lies on the {river} in {region_link}.",
      "{his} home town lies on the {river} in {region}.",
  ], **values))
  early.append(pick(rng, [
      "{his} father was a {father_trade}.",
      "{first}'s father worked as a {father_trade}.",
  ], **values))
  if person["mentor"]:
    mentor = person["mentor"]
    early.append(pick(rng, [
        "{he} learned the trade of a {trade} from {mentor}.",
        "As a young {trade} {he_l} studied under {mentor} in {mentor_town}.",
        "{he} was a pupil of the {trade} {mentor}.",
    ], mentor=link(mentor["name"]), mentor_town=mentor["town"]["name"],
                       **values))
  career = trade_sentences(rng, person, values)
  career.append(pick(rng, [
      "{he} is remembered in {town} as a skilled {trade}.",
      "A street in {town} is named after {him}.",
      "In {town} {he_l} is still known as a {trade}.",
  ], him="her" if person["female"] else "him", **values))
  sections = [
      "{{Infobox person\n| name = %s\n| birth_date = %d\n"
      "| birth_place = %s, %s\n| occupation = %s\n}}" % (
          person["name"], person["born"], link(town["name"]),
          link(region["name"]), person["trade"]),
      paragraph(rng, lead),
      "== Early life ==", paragraph(rng, early),
  ]
  if not alive:
    age = person["died"] - person["born"]
    death_town = person["death_town"]
    if death_town is not town:
      career.append(pick(rng, [
          "Later in life {he_l} moved to {death_town_link}, on the {river2}.",
          "{he} spent {his_l} last years in {death_town}, in {region2}.",
      ], river2=river_link(death_town["river"]),
                          region2=death_town["region"]["name"], **values))
  sections += ["== Career ==", paragraph(rng, career, keep_first=False)]
  if not alive:
    sections += ["== Death ==", pick(rng, [
        "{first} died in {death_town_link} in {died}, aged {age}.",
        "{he} died at {death_town} in {died}.",
        "{family} died in {died} in {death_town}, at the age of {age}.",
    ], age=age, **values)]
  if rng.random() < 0.2:
    sections.append("<!-- Please add sources for the later years. -->")
  sections += ["== References ==", "{{Reflist}}",
               "{{DEFAULTSORT:%s, %s}}" % (person["family"], person["first"]),
               "[[Category:People from %s]]" % town["name"],
               "[[Category:%s %ss]]" % (COUNTRY + "n", person["trade"])]
  return "\n\n".join(sections)


def species_article(rng, one):
  """Wikitext of a species article."""
  river = one["river"]
  describer = one["describer"]
  values = dict(
      common=one["common"], common_l=lower_first(one["common"]),
      scientific=one["scientific"], kind=one["kind"],
      class_word=one["class_word"], river=river["name"],
      river_link=river_link(river), region=one["region"]["name"],
      region_link=link(one["region"]["name"]), colour=one["colour"],
      second=one["second_colour"], part=one["part"], size=one["size"],
      status=one["status"], describer=link(describer["name"]),
      year=one["described_year"], soil=one["soil"], month=one["month"])
  lead = [pick(rng, [
      "The '''{common_l}''' (''{scientific}'') is a species of {class_word} "
      "found in {region_link}.",
      "The '''{common_l}''' (''{scientific}'') is a {class_word} native to "
      "the {river_link}.",
      "The '''{common_l}''' (''{scientific}'') is a {class_word} that lives "
      "along the {river_link} in {region_link}.",
  ], **values)]
  lead.append(pick(rng, [
      "It was first described by {describer} in {year}.",
      "The species was described by the {trade} {describer} in {year}.",
      "{describer} described it in {year}.",
  ], trade=describer["trade"], **values))
  if one["group"] == "plant":
    description = [pick(rng, [
        "Its {part} are {second}.",
        "The plant is {colour} with {second} {part}.",
        "The {kind} has {second} {part}.",
    ], **values)]
  elif one["part"].endswith("s"):
    description = [pick(rng, [
        "It is mostly {colour}, with {second} {part}.",
        "Adults are {colour} and have {second} {part}.",
        "The {kind} is {colour} with {second} {part}.",
    ], **values)]
  else:
    description = [pick(rng, [
        "It is mostly {colour}, with a {second} {part}.",
        "Adults are {colour} and have a {second} {part}.",
        "The {kind} is {colour} with a {second} {part}.",
    ], **values)]
  if one["kind"] == "willow":
    values["size_m"] = round(one["size"] * 1.3, 1)
    description.append(pick(rng, [
        "It grows to a height of {size_m}&nbsp;m.",
        "The tree reaches approx. {size_m}&nbsp;m in height.",
    ], **values))
  elif one["group"] == "plant":
    description.append(pick(rng, [
        "It grows to a height of {size}&nbsp;cm.",
        "The plant is approx. {size}&nbsp;cm tall.",
    ], **values))
  else:
    description.append(pick(rng, [
        "It reaches a length of {size}&nbsp;cm.",
        "Adults measure approx. {size}&nbsp;cm.",
        "It is about {size}&nbsp;cm long.",
    ], **values))
  if one["diet"]:
    values["diet"] = join_words(one["diet"])
    description.append(pick(rng, [
        "It feeds on {diet}.",
        "The {kind} eats mainly {diet}.",
        "Its diet consists of {diet}.",
    ], **values))
  else:
    description.append(pick(rng, [
        "It grows on {soil} soil and flowers in {month}.",
        "The plant prefers {soil} soil. It flowers in {month}.",
        "It flowers in {month} and grows best on {soil} soil.",
    ], **values))
  habitat = [pick(rng, [
      "It lives along the {river_link} in {region_link}.",
      "The {kind} is found on the banks of the {river}.",
      "Its range is limited to the {river} and the marshes of {region}.",
  ], **values)]
  if one["town"]:
    habitat.append(pick(rng, [
        "It is often seen near {town}.",
        "A large population lives near {town}, on the {river}.",
    ], town=link(one["town"]["name"]), **values))
  habitat.append(pick(rng, [
      "It is listed as {status}.",
      "The species is considered {status}.",
  ], **values) + "{{citation needed|date=May 2019}}")
  sections = [
      "{{Speciesbox\n| name = %s\n| taxon = %s\n| authority = %s, %d\n"
      "| status = %s\n}}" % (one["common"], one["scientific"],
                             describer["family"], one["described_year"],
                             one["status"]),
      paragraph(rng, lead),
      "== Description ==", paragraph(rng, description),
      "== Distribution and habitat ==", paragraph(rng, habitat),
      "== References ==", "{{Reflist}}",
      "[[Category:%ss of %s]]" % (one["group"].capitalize(), COUNTRY),
  ]
  return "\n\n".join(sections)


def extra_pages(world):
  """Redirects and non-article pages: (title, namespace, text, redirect)."""
  pages = []
  for town in world["towns"][:15]:
    alias = town["name"] + " (town)"
    pages.append((alias, 0, "#REDIRECT [[%s]]\n\n{{R from disambiguation}}" %
                  town["name"], town["name"]))
  for river in world["rivers"][:15]:
    alias = "%s River" % river["name"]
    pages.append((alias, 0, "#REDIRECT [[%s]]" % river_title(river),
                  river_title(river)))
  for one in world["species"][:10]:
    pages.append((one["scientific"], 0, "#REDIRECT [[%s]]" % one["common"],
                  one["common"]))
  region = world["regions"][0]
  pages += [
      ("Wikipedia:About the sample", 4,
       "This page is not an article. The sample encyclopedia describes the "
       "invented country of %s." % COUNTRY, None),
      ("Template:Infobox settlement", 10,
       "<includeonly>{| class=\"infobox\"\n! {{{name}}}\n|}</includeonly>"
       "<noinclude>This template shows an infobox for a settlement."
       "</noinclude>", None),
      ("Category:Towns in %s" % region["name"], 14,
       "This category lists towns in [[%s]]." % region["name"], None),
      ("User talk:Tolmarsen", 3,
       "Thanks for your edits to the river articles. ~~~~", None),
      ("File:%s river view.jpg" % world["towns"][0]["name"], 6,
       "== Summary ==\nA photograph of the river, taken by the uploader.",
       None),
  ]
  return pages


# ------------------------------------------------------------------------------
# XML writing.
# ------------------------------------------------------------------------------

SITEINFO = """  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://sample.invalid/wiki/Main_Page</base>
    <generator>MediaWiki 1.42.0-wmf.1</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="-2" case="first-letter">Media</namespace>
      <namespace key="-1" case="first-letter">Special</namespace>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
      <namespace key="2" case="first-letter">User</namespace>
      <namespace key="3" case="first-letter">User talk</namespace>
      <namespace key="4" case="first-letter">Wikipedia</namespace>
      <namespace key="6" case="first-letter">File</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
      <namespace key="828" case="first-letter">Module</namespace>
    </namespaces>
  </siteinfo>
"""
HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
          'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.10/ '
          'http://www.mediawiki.org/xml/export-0.10.xsd" version="0.10" '
          'xml:lang="en">\n')


def base36_sha1(text):
  """The page's sha1 in MediaWiki's base-36 form."""
  value = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)
  digits = "0123456789abcdefghijklmnopqrstuvwxyz"
  out = ""
  while value:
    value, rest = divmod(value, 36)
    out = digits[rest] + out
  return out.rjust(31, "0")


def page_xml(rng, title, namespace, page_id, text, redirect=None):
  """One <page> element with a single revision."""
  escape = lambda s: saxutils.escape(s, {'"': "&quot;"})
  revision_id = 100000000 + page_id * 7
  user = rng.choice(USERNAMES)
  timestamp = "20%02d-%02d-%02dT%02d:%02d:%02dZ" % (
      rng.randint(15, 23), rng.randint(1, 12), rng.randint(1, 28),
      rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
  lines = ["  <page>", "    <title>%s</title>" % escape(title),
           "    <ns>%d</ns>" % namespace, "    <id>%d</id>" % page_id]
  if redirect:
    lines.append('    <redirect title="%s" />' % escape(redirect))
  lines += [
      "    <revision>",
      "      <id>%d</id>" % revision_id,
      "      <parentid>%d</parentid>" % (revision_id - 3),
      "      <timestamp>%s</timestamp>" % timestamp,
      "      <contributor>",
      "        <username>%s</username>" % escape(user),
      "        <id>%d</id>" % (1000 + USERNAMES.index(user)),
      "      </contributor>",
      "      <comment>%s</comment>" % rng.choice(
          ["copyedit", "add sources", "/* History */ expand", "fix links"]),
      "      <model>wikitext</model>",
      "      <format>text/x-wiki</format>",
      '      <text bytes="%d" xml:space="preserve">%s</text>' % (
          len(text.encode("utf-8")), escape(text)),
      "      <sha1>%s</sha1>" % base36_sha1(text),
      "    </revision>",
      "  </page>",
  ]
  return "\n".join(lines) + "\n"


def generate_pages(seed):
  """Yields (title, namespace, text, redirect) for every page, in dump order."""
  rng = random.Random(seed)
  world = build_world(rng)
  articles = []
  for region in world["regions"]:
    articles.append((region["name"], region_article, region))
  for river in world["rivers"]:
    articles.append((river_title(river), river_article, river))
  for town in world["towns"]:
    articles.append((town["name"], town_article, town))
  for person in world["people"]:
    articles.append((person["name"], person_article, person))
  for one in world["species"]:
    articles.append((species_title(one), species_article, one))
  # Interleave the kinds of article, as a real dump is ordered by page id.
  rng.shuffle(articles)
  extras = extra_pages(world)
  step = max(1, len(articles) // (len(extras) + 1))
  for i, (title, writer, item) in enumerate(articles):
    yield title, 0, writer(rng, item), None
    if i % step == step - 1 and extras:
      yield extras.pop(0)
  for extra in extras:
    yield extra


def write_dump(path, seed):
  """Writes the bz2-compressed dump atomically; returns the page count."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  rng = random.Random(seed + 1)
  handle, temp_path = tempfile.mkstemp(dir=directory, suffix=".tmp")
  os.close(handle)
  count = 0
  try:
    with bz2.open(temp_path, "wt", encoding="utf-8", compresslevel=9) as out:
      out.write(HEADER)
      out.write(SITEINFO)
      for title, namespace, text, redirect in generate_pages(seed):
        count += 1
        out.write(page_xml(rng, title, namespace, 10 + count * 3, text,
                           redirect))
      out.write("</mediawiki>\n")
    os.chmod(temp_path, 0o644)
    os.replace(temp_path, path)
  except BaseException:
    os.remove(temp_path)
    raise
  return count


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--output", default=DEFAULT_OUTPUT,
                      help="Where to write the .xml.bz2 dump.")
  parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                      help="Random seed; the default gives the shipped file.")
  args = parser.parse_args()
  count = write_dump(args.output, args.seed)
  print("Wrote %d pages to %s (%d bytes)" % (
      count, args.output, os.path.getsize(args.output)))


if __name__ == "__main__":
  main()
