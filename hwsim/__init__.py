"""hwsim"""
