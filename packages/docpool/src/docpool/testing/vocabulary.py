"""What the generated reports say, per language (en, fr, de): organisations, sites, people,
section titles, filler sentences and the metrics that facts state. Facts carry English
attributes so they can be checked whatever the document's language."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    attribute: str  # with {year} where the value depends on a year
    unit: str | None
    kind: Literal["int", "float", "year", "name"]
    low: float
    high: float
    templates: dict[str, str]  # lang -> sentence with {subject} {value} {year}


METRICS = (
    Metric(
        "samples processed in {year}",
        "samples",
        "int",
        1200,
        9800,
        {
            "en": "The {subject} processed {value} samples in {year}.",
            "fr": "Le {subject} a traité {value} échantillons en {year}.",
            "de": "Der {subject} hat im Jahr {year} insgesamt {value} Proben bearbeitet.",
        },
    ),
    Metric(
        "employees at the end of {year}",
        "employees",
        "int",
        25,
        940,
        {
            "en": "At the end of {year}, the {subject} employed {value} people.",
            "fr": "Fin {year}, le {subject} employait {value} personnes.",
            "de": "Ende {year} beschäftigte der {subject} genau {value} Personen.",
        },
    ),
    Metric(
        "energy use in {year}",
        "MWh",
        "float",
        110,
        990,
        {
            "en": "Energy use at the {subject} reached {value} MWh in {year}.",
            "fr": "La consommation d'énergie du {subject} a atteint {value} MWh en {year}.",
            "de": "Der Energieverbrauch am {subject} erreichte im Jahr {year} {value} MWh.",
        },
    ),
    Metric(
        "average turnaround time in {year}",
        "days",
        "float",
        1.2,
        9.8,
        {
            "en": "The average turnaround time at the {subject} was {value} days in {year}.",
            "fr": "Le délai moyen de traitement au {subject} était de {value} jours en {year}.",
            "de": "Die mittlere Bearbeitungszeit am {subject} lag {year} bei {value} Tagen.",
        },
    ),
    Metric(
        "budget in {year}",
        "million euros",
        "float",
        2,
        95,
        {
            "en": "The {subject} operated on a budget of {value} million euros in {year}.",
            "fr": "Le {subject} disposait d'un budget de {value} millions d'euros en {year}.",
            "de": "Der {subject} verfügte {year} über ein Budget von {value} Millionen Euro.",
        },
    ),
    Metric(
        "safety incidents in {year}",
        "incidents",
        "int",
        2,
        75,
        {
            "en": "The {subject} recorded {value} safety incidents in {year}.",
            "fr": "Le {subject} a enregistré {value} incidents de sécurité en {year}.",
            "de": "Der {subject} meldete im Jahr {year} insgesamt {value} Sicherheitsvorfälle.",
        },
    ),
    Metric(
        "opening year",
        None,
        "year",
        1952,
        2014,
        {
            "en": "The {subject} first opened its doors in {value}.",
            "fr": "Le {subject} a ouvert ses portes en {value}.",
            "de": "Der {subject} wurde im Jahr {value} eröffnet.",
        },
    ),
    Metric(
        "director in {year}",
        None,
        "name",
        0,
        0,
        {
            "en": "In {year}, the {subject} was led by {value}.",
            "fr": "En {year}, le {subject} était dirigé par {value}.",
            "de": "Im Jahr {year} wurde der {subject} von {value} geleitet.",
        },
    ),
)

SITES = (
    "Lyon",
    "Porto",
    "Gdansk",
    "Utrecht",
    "Bergen",
    "Ghent",
    "Tartu",
    "Kosice",
    "Ancona",
    "Leipzig",
    "Aarhus",
    "Malmo",
)
SUBJECT = {"en": "{site} facility", "fr": "site de {site}", "de": "Standort {site}"}
PEOPLE = (
    "Ana Ferreira",
    "Jonas Berg",
    "Maria Novak",
    "Pieter de Vries",
    "Elena Rossi",
    "Tomas Kral",
    "Ingrid Dahl",
    "Lucas Martin",
    "Sofia Lind",
    "Karl Weber",
    "Nadia Haddad",
    "Oskar Nilsson",
)
ORGS = (
    "Northwind Laboratories",
    "Helix Water Authority",
    "Meridian Rail Freight",
    "Solstice Energy Cooperative",
    "Aurora Health Group",
    "Cobalt Materials Institute",
)
YEARS = (2018, 2019, 2020, 2021)

WORDS = {
    "en": {
        "report": "Annual Operations Report",
        "prepared": "Prepared by {author}",
        "summary": "A review of the sites, staffing, energy and safety of {org}.",
        "footer": "{org} - internal report",
        "page": "Page {n}",
        "figure": "Figure {n}: ",
        "table": "Table {n}: ",
        "site": "Site",
    },
    "fr": {
        "report": "Rapport annuel d'activité",
        "prepared": "Préparé par {author}",
        "summary": "Un bilan des sites, du personnel, de l'énergie et de la sécurité de {org}.",
        "footer": "{org} - rapport interne",
        "page": "Page {n}",
        "figure": "Figure {n} : ",
        "table": "Tableau {n} : ",
        "site": "Site",
    },
    "de": {
        "report": "Jährlicher Betriebsbericht",
        "prepared": "Erstellt von {author}",
        "summary": "Ein Überblick über Standorte, Personal, Energie und Sicherheit von {org}.",
        "footer": "{org} - interner Bericht",
        "page": "Seite {n}",
        "figure": "Abbildung {n}: ",
        "table": "Tabelle {n}: ",
        "site": "Standort",
    },
}

H1 = {
    "en": [
        "Introduction",
        "Scope and methods",
        "Site operations",
        "Staffing and training",
        "Energy and infrastructure",
        "Safety and compliance",
        "Quality management",
        "Finance and budget",
        "Regional partnerships",
        "Research activities",
        "Digital systems",
        "Procurement",
        "Environmental impact",
        "Customer feedback",
        "Risk assessment",
        "Outlook",
    ],
    "fr": [
        "Introduction",
        "Périmètre et méthodes",
        "Activité des sites",
        "Personnel et formation",
        "Énergie et infrastructures",
        "Sécurité et conformité",
        "Gestion de la qualité",
        "Finances et budget",
        "Partenariats régionaux",
        "Activités de recherche",
        "Systèmes numériques",
        "Achats",
        "Impact environnemental",
        "Retours des clients",
        "Évaluation des risques",
        "Perspectives",
    ],
    "de": [
        "Einleitung",
        "Umfang und Methoden",
        "Betrieb der Standorte",
        "Personal und Ausbildung",
        "Energie und Infrastruktur",
        "Sicherheit und Compliance",
        "Qualitätsmanagement",
        "Finanzen und Budget",
        "Regionale Partnerschaften",
        "Forschungsaktivitäten",
        "Digitale Systeme",
        "Beschaffung",
        "Umweltwirkung",
        "Rückmeldungen der Kunden",
        "Risikobewertung",
        "Ausblick",
    ],
}
H2 = {
    "en": [
        "Overview",
        "Key figures",
        "Main changes",
        "Open issues",
        "Lessons learned",
        "Planned measures",
        "Comparison with previous years",
        "Local conditions",
    ],
    "fr": [
        "Vue d'ensemble",
        "Chiffres clés",
        "Principaux changements",
        "Questions ouvertes",
        "Enseignements",
        "Mesures prévues",
        "Comparaison avec les années précédentes",
        "Conditions locales",
    ],
    "de": [
        "Überblick",
        "Kennzahlen",
        "Wichtigste Änderungen",
        "Offene Punkte",
        "Erkenntnisse",
        "Geplante Maßnahmen",
        "Vergleich mit den Vorjahren",
        "Örtliche Bedingungen",
    ],
}
FILLER = {
    "en": [
        "The review covers the work of every site over the reporting period.",
        "Teams continued to harmonise their procedures across the network.",
        "Most of the planned improvements were delivered on schedule.",
        "Several processes were simplified after consultation with the staff.",
        "The board discussed the results at its regular quarterly meetings.",
        "External auditors confirmed that the controls were working as intended.",
        "Demand remained stable although it varied between the regions.",
        "New equipment was installed where the older systems had reached the end of their life.",
        "Training sessions were offered to all new members of staff.",
        "The organisation also strengthened its cooperation with local universities.",
        "Feedback from partners was collected through short structured interviews.",
        "Maintenance windows were planned to avoid disruption during busy months.",
        "This section summarises the main observations and the actions that followed.",
        "Further details are given in the tables and figures of this report.",
        "Where comparisons are made, the same definitions were used for every year.",
    ],
    "fr": [
        "Le bilan couvre le travail de chaque site pendant la période considérée.",
        "Les équipes ont poursuivi l'harmonisation de leurs procédures dans tout le réseau.",
        "La plupart des améliorations prévues ont été livrées dans les délais.",
        "Plusieurs processus ont été simplifiés après une consultation du personnel.",
        "Le conseil a examiné les résultats lors de ses réunions trimestrielles.",
        "Les auditeurs externes ont confirmé que les contrôles fonctionnaient comme prévu.",
        "La demande est restée stable même si elle a varié selon les régions.",
        "De nouveaux équipements ont été installés là où les anciens systèmes étaient usés.",
        "Des sessions de formation ont été proposées à tous les nouveaux collaborateurs.",
        "L'organisation a aussi renforcé sa coopération avec les universités locales.",
        "Les avis des partenaires ont été recueillis lors de courts entretiens structurés.",
        "Les périodes de maintenance ont été planifiées pour éviter les mois chargés.",
        "Cette section résume les principales observations et les actions qui ont suivi.",
        "Les tableaux et les figures de ce rapport donnent davantage de détails.",
        "Les comparaisons reposent sur les mêmes définitions pour chaque année.",
    ],
    "de": [
        "Der Bericht umfasst die Arbeit aller Standorte im Berichtszeitraum.",
        "Die Teams haben ihre Abläufe im gesamten Netzwerk weiter vereinheitlicht.",
        "Die meisten geplanten Verbesserungen wurden termingerecht umgesetzt.",
        "Mehrere Prozesse wurden nach Rücksprache mit den Beschäftigten vereinfacht.",
        "Der Vorstand hat die Ergebnisse in seinen regelmäßigen Sitzungen besprochen.",
        "Externe Prüfer haben bestätigt, dass die Kontrollen wie vorgesehen funktionieren.",
        "Die Nachfrage blieb stabil, auch wenn sie sich zwischen den Regionen unterschied.",
        "Neue Geräte wurden dort installiert, wo die alten Anlagen verschlissen waren.",
        "Allen neuen Mitarbeitenden wurden Schulungen angeboten.",
        "Die Organisation hat außerdem die Zusammenarbeit mit den Hochschulen verstärkt.",
        "Rückmeldungen der Partner wurden in kurzen strukturierten Gesprächen gesammelt.",
        "Wartungsfenster wurden so geplant, dass die arbeitsreichen Monate frei blieben.",
        "Dieser Abschnitt fasst die wichtigsten Beobachtungen und Maßnahmen zusammen.",
        "Weitere Einzelheiten enthalten die Tabellen und Abbildungen dieses Berichts.",
        "Bei Vergleichen wurden für jedes Jahr dieselben Definitionen verwendet.",
    ],
}
TABLE_TOPICS = {
    "en": "{metric} by site",
    "fr": "{metric} par site",
    "de": "{metric} nach Standort",
}
TABLE_METRICS = {
    "en": ["Samples processed", "Employees", "Energy use (MWh)", "Safety incidents"],
    "fr": ["Échantillons traités", "Effectifs", "Énergie (MWh)", "Incidents de sécurité"],
    "de": ["Bearbeitete Proben", "Beschäftigte", "Energie (MWh)", "Sicherheitsvorfälle"],
}
FIGURE_TOPICS = {
    "en": "Quarterly activity at the {site} facility",
    "fr": "Activité trimestrielle du site de {site}",
    "de": "Quartalsaktivität am Standort {site}",
}


def format_number(value: float, lang: str, decimals: int = 0) -> str:
    """A number as the document's language prints it: 4,512 / 4 512 / 4.512; 3.7 / 3,7."""
    text = f"{value:,.{decimals}f}"
    if lang == "fr":
        return text.replace(",", " ").replace(".", ",")
    if lang == "de":
        return text.replace(",", "_").replace(".", ",").replace("_", ".")
    return text
