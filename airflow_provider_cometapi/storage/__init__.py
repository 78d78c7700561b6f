"""Reading source images and writing edited outputs through Airflow's ``ObjectStoragePath``."""
