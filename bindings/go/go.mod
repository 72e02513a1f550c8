module example.invalid/headcount

go 1.19
