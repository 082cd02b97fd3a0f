"""A small inventory module for a shop."""

from dataclasses import dataclass, field


@dataclass
class Item:
    sku: str
    name: str
    price_cents: int
    quantity: int = 0


@dataclass
class Inventory:
    items: dict[str, Item] = field(default_factory=dict)

    def add_item(self, sku: str, name: str, price_cents: int, quantity: int = 0) -> Item:
        """Register a new item. Raises ValueError if the SKU already exists."""
        if sku in self.items:
            raise ValueError(f"duplicate SKU {sku}")
        item = Item(sku, name, price_cents, quantity)
        self.items[sku] = item
        return item

    def restock(self, sku: str, amount: int) -> int:
        """Add ``amount`` units to an item and return the new quantity."""
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.items[sku].quantity += amount
        return self.items[sku].quantity

    def sell(self, sku: str, amount: int = 1) -> int:
        """Remove ``amount`` units; returns the total price in cents."""
        item = self.items[sku]
        if item.quantity < amount:
            raise ValueError("not enough stock")
        item.quantity -= amount
        return item.price_cents * amount

    def total_value(self) -> int:
        """Value of all stock in cents."""
        return sum(i.price_cents * i.quantity for i in self.items.values())
