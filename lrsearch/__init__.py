"""lrsearch: what is the cheapest way to find a good learning rate?"""

__version__ = "0.1.0"
