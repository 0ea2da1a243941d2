"""What to run: run options (`runspec`), recipes, the models and the datasets they train on."""
