"""Layer 4: DataFrame encryption/decryption on Spark and the Unity Catalog SQL layer."""
