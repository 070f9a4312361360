"""The store: Peewee models, opening (pragmas, migrations) and the queries the engine and the faces share."""
