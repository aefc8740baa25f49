fn main() {
    println!("promptq: under construction");
}
