module github.com/headcount-rs/headcount/bindings/go

go 1.19
