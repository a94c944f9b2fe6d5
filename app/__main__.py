"""``python -m app`` runs the same CLI as the ``accessbot`` console script."""

from app.cli import main

if __name__ == "__main__":
    main()
