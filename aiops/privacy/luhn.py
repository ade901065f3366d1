def luhn_valid(digits: str) -> bool:
    """The card-number checksum: only numbers that pass it are masked as cards."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0
