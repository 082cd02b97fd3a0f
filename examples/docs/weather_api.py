"""Client functions for a weather service."""

import json
from urllib.request import urlopen

BASE_URL = "https://weather.example.com/v1"


def get_current_weather(city: str, units: str = "metric") -> dict:
    """Return the current temperature, humidity and wind speed for ``city``.

    ``units`` is "metric" (Celsius, km/h) or "imperial" (Fahrenheit, mph).
    """
    with urlopen(f"{BASE_URL}/current?city={city}&units={units}") as resp:
        return json.load(resp)


def get_forecast(city: str, days: int = 3, units: str = "metric") -> list[dict]:
    """Return a daily forecast for ``days`` days (1 to 10) with min/max temperature and rain chance."""
    if not 1 <= days <= 10:
        raise ValueError("days must be between 1 and 10")
    with urlopen(f"{BASE_URL}/forecast?city={city}&days={days}&units={units}") as resp:
        return json.load(resp)["days"]


def get_air_quality(latitude: float, longitude: float) -> dict:
    """Return the air quality index (0-500) and the main pollutant at a location."""
    with urlopen(f"{BASE_URL}/air?lat={latitude}&lon={longitude}") as resp:
        return json.load(resp)
